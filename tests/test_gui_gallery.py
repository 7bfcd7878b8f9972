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


def _cell_centre(tab, model, row, column):
    from trav_gui.engine.output.gallery import _layout, render_gallery

    lay = _layout(tab.gallery, 3)
    width = render_gallery(tab.gallery, 0).width
    return (model * (width + 20) + lay["margin"] + column * (lay["cell"] + 4) + lay["cell"] // 2,
            lay["top"] + lay["margin"] + row * (lay["cell"] + lay["caption"] + 4) + lay["cell"] // 2)


def test_cells_are_judged_and_a_click_opens_that_traversal_in_the_traversal_tab(qtbot, gui_models):
    from PySide6.QtCore import QPoint, Qt

    w = make_window(qtbot, gui_models)
    tab = w.gallery_tab
    tab.steps.setValue(2)
    with qtbot.waitSignal(tab.gallery_finished, timeout=60_000):
        assert tab.compute()
    assert tab.gallery.success is not None and tab.gallery.success.shape == (2, 10, 10)  # realism is on
    assert "Real-looking targets" in tab.status.text()
    w.tabs.setCurrentIndex(1)
    x, y = _cell_centre(tab, 1, 3, 7)
    with qtbot.waitSignal(w.run_finished, timeout=60_000):
        qtbot.mouseClick(tab.picture, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
    assert w.tabs.currentIndex() == 0
    assert w.input_panel.test_index == gallery_start_indices()[3] and w.target_picker.target == 7
    assert w.history is not None and len(w.history) > 1 and w.history.target == 7  # it was played
    # The start itself and the space between cells open nothing.
    assert not tab.open_cell_at(*_cell_centre(tab, 0, 4, 4)) and not tab.open_cell_at(2, 2)


def test_a_one_row_gallery_starts_from_the_traversal_tabs_start(qtbot, gui_models):
    from trav_gui.qt.gallery_tab import ROW_FROM_START

    w = make_window(qtbot, gui_models)
    w.input_panel.pick_example(15)
    tab = w.gallery_tab
    tab.steps.setValue(2)
    tab.rows.setCurrentText(ROW_FROM_START)
    with qtbot.waitSignal(tab.gallery_finished, timeout=60_000):
        assert tab.compute()
    images, labels = data.test_digits()
    g = tab.gallery
    assert g.images.shape == (2, 1, 10, 28, 28) and g.rows == (int(labels[15]),) and g.start_indices == (15,)
    assert np.allclose(g.images[:, 0, int(labels[15])], images[15] / 255.0)
    opened = []
    tab.cell_opened.connect(lambda *a: opened.append(a))
    other = (int(labels[15]) + 1) % 10
    assert tab.open_cell_at(*_cell_centre(tab, 0, 0, other))
    assert opened[0][1:] == (15, other, "robust") and np.allclose(opened[0][0], images[15] / 255.0)


def test_the_success_map_is_computed_in_the_tab_and_saved(qtbot, gui_models, tmp_path):
    w = make_window(qtbot, gui_models)
    tab = w.gallery_tab
    tab.steps.setValue(2)
    tab.per_class.setValue(1)
    with qtbot.waitSignal(tab.successmap_finished, timeout=120_000) as blocker:
        assert tab.compute_successmap(tmp_path)
        assert not tab.successmap_button.isEnabled() and tab.cancel_button.isEnabled()
    assert blocker.args == [True]
    assert [m.name for m in tab.successmaps] == ["robust", "standard"]
    assert all(m.traversals.sum() == 90 for m in tab.successmaps)
    for name in ("robust", "standard"):
        assert (tmp_path / f"successmap_{name}.png").is_file() and (tmp_path / f"successmap_{name}.csv").is_file()
    assert not tab.picture.pixmap().isNull() and str(tmp_path) in tab.status.text()
    assert tab.gallery is None and not tab.open_cell_at(100, 100)  # the map is no gallery to click
    assert "at the last frame" in tab.status.text()
    # Maps already in the folder (the same models and settings) are read, not traversed again.
    with qtbot.waitSignal(tab.successmap_finished, timeout=60_000) as blocker:
        assert tab.compute_successmap(tmp_path)
    assert blocker.args == [True] and tab.progress.value() == tab.progress.maximum()
    assert [m.traversals.sum() for m in tab.successmaps] == [90, 90]


def test_with_fashion_chosen_the_gallery_traverses_garments_and_names_them(qtbot, tmp_path):
    """Issue 22: the Gallery tab once traversed MNIST digits with the Fashion models, rows 0-9."""
    import torch

    from trav_gui.engine.models.architectures import SmallCNN
    from trav_gui.engine.models.weights import save_model

    folder = tmp_path / "models"
    for i, name in enumerate(["fashion-a", "fashion-b"]):
        torch.manual_seed(i)
        save_model(SmallCNN(), folder / f"{name}.safetensors", {"kind": "test", "dataset": "fashion-mnist"},
                   "small_cnn")
    w = make_window(qtbot, folder)
    assert w.set_dataset("fashion-mnist")
    w.selector.set_selected([e.key for e in w.selector.entries()])
    tab = w.gallery_tab
    tab.steps.setValue(1)
    with qtbot.waitSignal(tab.gallery_finished, timeout=60_000) as blocker:
        assert tab.compute()
    assert blocker.args == [True]
    g = tab.gallery
    assert g.dataset == "fashion-mnist"
    garments, _ = data.test_set("fashion-mnist")
    starts = gallery_start_indices("fashion-mnist")
    assert tuple(g.start_indices) == tuple(starts) != tuple(gallery_start_indices())
    for r, idx in enumerate(starts):  # the diagonal is the start garment, not a digit
        assert np.allclose(g.images[:, r, r], garments[idx] / 255.0)
    from trav_gui.engine.data.datasets import get_dataset
    from trav_gui.engine.output.gallery import _layout

    fashion = get_dataset("fashion-mnist")
    assert _layout(g, 3)["names"] == [fashion.short(k) for k in range(10)] != [str(k) for k in range(10)]
