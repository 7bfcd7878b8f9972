"""The Gallery tab: the 10×10 grids computed in the background, shown, cancellable, saved."""

from __future__ import annotations

import numpy as np
from PIL import Image

from trav_gui.engine.data import datasets as data
from trav_gui.engine.output.gallery import gallery_start_indices

from helpers import make_window


def test_gallery_tab_computes_shows_and_saves_the_grids_of_the_ticked_models(qtbot, gui_models, tmp_path):
    w = make_window(qtbot, gui_models)
    tab = w.gallery_tab
    tab.steps.setValue(3)
    assert not tab.save_button.isEnabled()
    with qtbot.waitSignal(tab.gallery_finished, timeout=60_000) as blocker:
        assert tab.compute()
        assert not tab.compute_button.isEnabled() and tab.cancel_button.isEnabled()
    assert blocker.args == [True]
    g = tab.gallery
    assert g.model_names == ("robust", "standard") and g.config.steps == 3
    assert g.images.shape == (2, 10, 10, 28, 28)
    images, _ = data.test_digits()
    for r, idx in enumerate(gallery_start_indices()):  # the diagonal is the start digit
        assert np.allclose(g.images[:, r, r], images[idx] / 255.0)
    starts = g.images[:, np.arange(10), np.arange(10)]  # (2, 10, 28, 28)
    moved = np.abs(g.images - starts[:, :, None]).reshape(2, 10, 10, -1).max(-1)
    assert (moved[:, ~np.eye(10, dtype=bool)] > 0).all()  # every traversal left its start
    pixmap = tab.picture.pixmap()
    assert not pixmap.isNull() and (pixmap.width(), pixmap.height()) == tab.image.size
    qtbot.waitUntil(lambda: tab.save_button.isEnabled())
    saved = tab.save_png(tmp_path / "g.png")
    assert np.array_equal(np.asarray(Image.open(saved).convert("RGB")), np.asarray(tab.image.convert("RGB")))
    assert "reached the target" in tab.status.text()


def test_gallery_can_be_cancelled_and_closing_waits_for_its_thread(qtbot, gui_models):
    w = make_window(qtbot, gui_models)
    tab = w.gallery_tab
    tab.steps.setValue(2000)
    with qtbot.waitSignal(tab.gallery_finished, timeout=60_000) as blocker:
        assert tab.compute()
        qtbot.waitUntil(lambda: tab.progress.value() >= 1, timeout=30_000)
        tab.cancel()
    assert blocker.args == [False] and tab.gallery is None
    assert "cancelled" in tab.status.text()
    # Closing while a computation runs stops it; the QThread-leak fixture checks no thread is left.
    assert tab.compute()
    w.close()
    assert not tab.is_running()


def test_computing_again_right_after_a_result_does_not_wait_on_a_queued_quit(qtbot, gui_models):
    """Regression: compute() waited for the old thread, whose quit() sat in the GUI's own queue."""
    w = make_window(qtbot, gui_models)
    tab = w.gallery_tab
    tab.steps.setValue(2)
    for _ in range(5):
        with qtbot.waitSignal(tab.gallery_finished, timeout=60_000):
            assert tab.compute()
        # No event processing between the result and the next compute: the old thread's
        # queued quit() has not run yet.
        assert tab.compute()
        with qtbot.waitSignal(tab.gallery_finished, timeout=60_000):
            pass
