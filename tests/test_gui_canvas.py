"""Drawing on the canvas with real mouse events, and what the models get from it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from trav_gui.engine.data import datasets as data
from trav_gui.engine.data.preprocess import drawing_to_mnist
from trav_gui.qt.canvas import CANVAS_SIZE, DrawingCanvas
from trav_gui.qt.input_panel import InputPanel


def stroke(qtbot, widget, points):
    """Press at the first point, move through the rest, release at the last."""
    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=QPoint(*points[0]))
    for p in points[1:]:
        event = QMouseEvent(QMouseEvent.Type.MouseMove, QPoint(*p), widget.mapToGlobal(QPoint(*p)),
                            Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(widget, event)
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=QPoint(*points[-1]))


@pytest.fixture
def canvas(qtbot):
    c = DrawingCanvas()
    qtbot.addWidget(c)
    c.resize(CANVAS_SIZE, CANVAS_SIZE)
    c.show()
    qtbot.waitExposed(c)
    return c


def test_a_vertical_stroke_becomes_a_centred_one_in_the_model_input(qtbot, canvas):
    with qtbot.waitSignal(canvas.drawing_changed, timeout=1000):
        stroke(qtbot, canvas, [(140, 40), (140, 100), (140, 160), (140, 240)])
    ink = canvas.ink()
    assert ink.shape == (CANVAS_SIZE, CANVAS_SIZE)
    cols = np.flatnonzero(ink.max(0) > 0.5)
    rows = np.flatnonzero(ink.max(1) > 0.5)
    # Ink where the mouse went, as wide as the brush (22 px by default).
    assert 120 <= cols[0] and cols[-1] <= 160 and 15 <= cols[-1] - cols[0] + 1 <= 26
    assert rows[0] <= 40 and rows[-1] >= 240
    x = drawing_to_mnist(ink)
    assert x.shape == (28, 28) and x.dtype == np.float32
    ys, xs = np.nonzero(x > 0.3)
    assert ys.max() - ys.min() + 1 in (19, 20, 21)  # the 20-pixel MNIST box
    assert abs(xs.mean() - 13.5) < 1.5  # centred by mass


def test_undo_removes_only_the_last_stroke_and_clear_everything(qtbot, canvas):
    stroke(qtbot, canvas, [(60, 60), (60, 200)])
    one = canvas.ink().copy()
    stroke(qtbot, canvas, [(200, 60), (200, 200)])
    assert canvas.stroke_count == 2 and canvas.ink()[130, 200] > 0.9
    with qtbot.waitSignal(canvas.drawing_changed, timeout=1000):
        canvas.undo()
    assert canvas.stroke_count == 1
    assert np.array_equal(canvas.ink(), one)
    with qtbot.waitSignal(canvas.drawing_changed, timeout=1000):
        canvas.clear()
    assert canvas.is_empty() and canvas.ink().max() == 0


def test_brush_width_sets_the_stroke_width(qtbot, canvas):
    canvas.set_brush_width(6)
    stroke(qtbot, canvas, [(140, 40), (140, 240)])
    width = int((canvas.ink()[140] > 0.5).sum())
    assert 4 <= width <= 8


def test_canvas_scales_with_the_widget(qtbot, canvas):
    canvas.resize(400, 400)
    qtbot.waitUntil(lambda: canvas.width() == 400)
    stroke(qtbot, canvas, [(200, 40), (200, 360)])
    cols = np.flatnonzero(canvas.ink().max(0) > 0.5)
    assert 135 <= cols.mean() <= 145  # widget x 200 of 400 is raster x 140 of 280


def test_input_panel_preprocesses_strokes_and_picks_examples(qtbot):
    images, labels = data.test_digits()
    panel = InputPanel(images, labels)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.start_image is None and "empty" in panel.error
    c = panel.canvas
    with qtbot.waitSignal(panel.start_changed, timeout=1000):
        stroke(qtbot, c, [(int(c.width() * 0.5), int(c.height() * 0.15)),
                          (int(c.width() * 0.5), int(c.height() * 0.85))])
    assert np.array_equal(panel.start_image, drawing_to_mnist(c.ink()))
    assert panel.test_index is None
    assert panel.preview.pixmap().width() == 28 * 4

    with qtbot.waitSignal(panel.start_changed, timeout=1000):
        panel.pick_example(15)
    assert panel.test_index == 15
    assert np.array_equal(panel.start_image, images[15] / np.float32(255))  # exact, not re-processed
    assert "true label <b>5</b>" in panel.true_label.text()
    # A stroke over the digit edits it; undoing it returns to the exact digit.
    stroke(qtbot, c, [(10, 10), (40, 10)])
    assert panel.test_index is None and not np.array_equal(panel.start_image, images[15] / np.float32(255))
    c.undo()
    assert panel.test_index == 15 and np.array_equal(panel.start_image, images[15] / np.float32(255))

    panel.class_filter.setCurrentIndex(panel.class_filter.findData(7))
    for _ in range(5):
        index = panel.pick_random()
        assert labels[index] == 7 and panel.test_index == index
    with pytest.raises(IndexError):
        panel.pick_example(10_000)
