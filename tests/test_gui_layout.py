"""The window fits a laptop: its minimum size fits 1366×740 (a 1366×768 screen under a panel)
with two and with three models after a run, and it opens within the screen's free area."""

from __future__ import annotations

import pytest
import torch

from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.weights import save_model

from helpers import make_window

LAPTOP = (1366, 740)


@pytest.mark.parametrize(("n_models", "dataset"), [(2, "mnist"), (3, "mnist"), (3, "fashion-mnist")])
def test_the_window_minimum_fits_a_laptop_with_two_and_three_models(qtbot, gui_models, n_models, dataset):
    if dataset != "mnist":  # long class names ("Ankle boot") must not widen the columns either
        for p in list(gui_models.iterdir()):
            p.unlink()
    for k in range(n_models if dataset != "mnist" else n_models - 2):
        torch.manual_seed(3 + k)
        save_model(SmallCNN(), gui_models / f"extra{k}.safetensors", {"kind": "test", "dataset": dataset},
                   "small_cnn")
    w = make_window(qtbot, gui_models)
    assert w.set_dataset(dataset)
    w.selector.set_selected([e.key for e in w.selector.entries() if e.dataset == dataset][:n_models])
    w.input_panel.pick_example(9)  # Fashion: a sneaker, toward "Ankle boot"
    w.set_target(9)
    w.settings.max_steps.setValue(3)
    with qtbot.waitSignal(w.run_finished, timeout=60_000):
        w.play()
    assert len(w.view.columns) == n_models
    hint = w.minimumSizeHint()
    assert hint.width() <= LAPTOP[0] and hint.height() <= LAPTOP[1], (hint.width(), hint.height())
    w.resize(*LAPTOP)
    qtbot.wait(50)
    assert (w.width(), w.height()) == LAPTOP  # nothing forces it larger
    # The plots, the timeline and the status bar are inside the window, not cut off.
    for widget in (w.view, w._timeline, w.transport, w.statusBar()):
        corner = widget.mapTo(w, widget.rect().bottomRight())
        assert widget.isVisible() and corner.x() < w.width() and corner.y() < w.height(), (widget, corner)
    assert w.view.width() >= 600 and w.view.height() >= 400  # and the plots are still of a usable size
    # The columns themselves fit the view: the scene's smallest layout is no wider than it (a
    # graphics scene does not push the window wider; it is cut off at the right instead).
    from PySide6.QtCore import Qt

    scene_min = w.view.graphics.ci.effectiveSizeHint(Qt.SizeHint.MinimumSize)
    assert scene_min.width() <= w.view.graphics.viewport().width(), (scene_min.width(), w.view.graphics.width())


def test_the_window_opens_within_the_screens_free_area(qtbot, gui_models):
    w = make_window(qtbot, gui_models)
    free = w.screen().availableGeometry()
    assert w.width() <= max(free.width(), w.minimumSizeHint().width())
    assert w.height() <= max(free.height(), w.minimumSizeHint().height())
    assert w.width() <= 1560 and w.height() <= 960


def test_the_wheel_scrolls_the_left_panel_and_leaves_the_settings_under_it_alone(qtbot, gui_models):
    """At laptop height the left panel scrolls; a wheel turn over the seed or the norm leaves them
    as they are and goes on to the panel (Qt hands a user's wheel event that a widget leaves
    unaccepted to its parents), until the user clicks into the setting."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    def wheel(widget, notches: int = -1) -> bool:  # negative: down; returns whether it was taken
        centre = QPointF(widget.rect().center())
        event = QWheelEvent(centre, QPointF(widget.mapToGlobal(widget.rect().center())), QPoint(),
                            QPoint(0, 120 * notches), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                            Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(widget, event)
        return event.isAccepted()

    w = make_window(qtbot, gui_models)
    w.resize(*LAPTOP)
    w.show()
    qtbot.waitExposed(w)
    bar = w.left_scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the panel is taller than the window: it scrolls
    seed, norm = w.settings.seed, w.settings.norm
    seed.setValue(5)
    norm_before = norm.currentIndex()
    assert not wheel(seed) and not wheel(norm)  # left for the parents: the panel scrolls
    assert seed.value() == 5 and norm.currentIndex() == norm_before
    assert wheel(w.left_scroll.viewport()) and bar.value() > 0  # what the panel does with it
    # Clicked into, the setting takes the wheel as usual.
    w.activateWindow()
    seed.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(seed.hasFocus, timeout=2000)
    assert wheel(seed, 1) and seed.value() == 6
