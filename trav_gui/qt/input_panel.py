"""Where the start image comes from: a drawing, or a shipped test image of the data set.

The panel owns the canvas (with a brush colour in colour worlds), the preview of what the
models actually get (the data set's size), the example picker and the label showing the
models' predictions of the start image. It knows nothing about models: the window hands it
prediction text.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from trav_gui.engine.data.datasets import Dataset, all_datasets, get_dataset
from trav_gui.engine.data.preprocess import EmptyDrawingError, drawing_to_image
from trav_gui.qt.canvas import DrawingCanvas

__all__ = ["InputPanel", "image_to_pixmap"]

PREVIEW_SCALE = 4
PREVIEW_SIDE = 28 * PREVIEW_SCALE  # the preview's size in pixels, whatever the image size


def image_to_pixmap(image: np.ndarray, scale: int) -> QPixmap:
    """A grey (h, w) or colour (3, h, w) image in [0, 1] as a pixmap, upscaled by nearest neighbour."""
    px = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if px.ndim == 3:
        px = np.ascontiguousarray(np.repeat(np.repeat(px.transpose(1, 2, 0), scale, 0), scale, 1))
        h, w = px.shape[:2]
        return QPixmap.fromImage(QImage(px.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())
    px = np.ascontiguousarray(np.kron(px, np.ones((scale, scale), np.uint8)))
    h, w = px.shape
    return QPixmap.fromImage(QImage(px.data, w, h, w, QImage.Format.Format_Grayscale8).copy())


class InputPanel(QGroupBox):
    """Canvas, preview, example picker and start predictions.

    Signals
    -------
    start_changed() : the start image changed (a stroke, undo, clear, or a picked digit).

    Attributes
    ----------
    start_image : (H, W) (colour: (3, H, W)) float32 in [0, 1], or None when the canvas is empty.
    test_index : the picked test digit's index, or None for a drawing.
    error : why there is no start image (e.g. the canvas is empty), or None.
    """

    start_changed = Signal()
    dataset_changed = Signal(str)

    def __init__(self, images: np.ndarray | None, labels: np.ndarray | None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Start image", parent)
        self._images, self._labels = images, labels
        self.class_names: list[str] = [str(c) for c in range(10)]
        self.set_title = "MNIST"
        self.dataset: Dataset = get_dataset(None)
        self._rng = np.random.default_rng()
        self.start_image: np.ndarray | None = None
        self.test_index: int | None = None
        # The exact image under the strokes (a picked digit or a replayed start), if any.
        self._base_index: int | None = None
        self._base_image: np.ndarray | None = None
        self.error: str | None = EmptyDrawingError("the canvas is empty: draw a digit first").args[0]

        self.dataset_box = QComboBox()
        for ds in all_datasets().values():
            self.dataset_box.addItem(ds.title, ds.name)
        self.dataset_box.setToolTip("The data set: its test images, class names and models")
        self.canvas = DrawingCanvas()
        self.brush = QSpinBox(minimum=4, maximum=60, value=int(self.canvas.brush_width), suffix=" px")
        self.brush.setToolTip("Brush width on the 280×280 canvas (MNIST strokes are about 20 px).")
        self.colour_button = QPushButton("Colour…")
        self.colour_button.setToolTip("The brush colour (colour data sets)")
        self.colour_button.setVisible(False)
        self._show_brush_colour()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Remove the last stroke (Ctrl+Z)")
        self.clear_button = QPushButton("Clear")
        self.preview = QLabel()
        self.preview.setFixedSize(PREVIEW_SIDE + 2, PREVIEW_SIDE + 2)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setStyleSheet("border: 1px solid #555; background: black;")
        self.preview.setToolTip("The 28×28 image the models get (MNIST-style: 20×20 box, centred by mass)")
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        self.predictions_label = QLabel("")
        self.predictions_label.setWordWrap(True)
        self.predictions_label.setTextFormat(Qt.TextFormat.RichText)

        self.index = QSpinBox(minimum=0, maximum=max(0, (len(labels) if labels is not None else 1) - 1))
        self.index.setToolTip("Index of the test image")
        self.pick_button = QPushButton("Use")
        self.pick_button.setToolTip("Use test image #index")
        self.class_filter = QComboBox()
        self.class_filter.addItem("any class", None)
        for c in range(10):
            self.class_filter.addItem(f"class {c}", c)
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("A random test image of the chosen class")
        self.true_label = QLabel("")

        top = QHBoxLayout()
        tools = QVBoxLayout()
        tools.addWidget(QLabel("Brush"))
        tools.addWidget(self.brush)
        tools.addWidget(self.colour_button)
        tools.addWidget(self.undo_button)
        tools.addWidget(self.clear_button)
        tools.addSpacing(6)
        tools.addWidget(QLabel("Model input"))
        tools.addWidget(self.preview)
        tools.addStretch(1)
        top.addWidget(self.canvas, 1)
        top.addLayout(tools)

        picker = QGridLayout()
        self.index_caption = QLabel("MNIST test #")
        picker.addWidget(self.index_caption, 0, 0)
        picker.addWidget(self.index, 0, 1)
        picker.addWidget(self.pick_button, 0, 2)
        picker.addWidget(self.class_filter, 1, 0, 1, 2)
        picker.addWidget(self.random_button, 1, 2)
        picker.addWidget(self.true_label, 2, 0, 1, 3)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Data set"))
        row.addWidget(self.dataset_box, 1)
        layout.addLayout(row)
        layout.addLayout(top)
        layout.addLayout(picker)
        layout.addWidget(self.source_label)
        layout.addWidget(self.predictions_label)

        if images is None:
            for w in (self.index, self.pick_button, self.class_filter, self.random_button):
                w.setEnabled(False)
            self.true_label.setText("MNIST test digits not found (resources/mnist_test.npz)")

        self.brush.valueChanged.connect(self.canvas.set_brush_width)
        self.colour_button.clicked.connect(self._ask_brush_colour)
        self.undo_button.clicked.connect(self.canvas.undo)
        self.clear_button.clicked.connect(self.canvas.clear)
        self.canvas.drawing_changed.connect(self._on_canvas_drawing_changed)
        self.pick_button.clicked.connect(lambda: self.pick_example(self.index.value()))
        self.index.editingFinished.connect(lambda: self.pick_example(self.index.value()))
        self.random_button.clicked.connect(self.pick_random)
        self.dataset_box.currentIndexChanged.connect(
            lambda _i: self.dataset_changed.emit(self.dataset_box.currentData()))
        undo = QShortcut(QKeySequence.StandardKey.Undo, self)
        undo.activated.connect(self.canvas.undo)
        self._show_preview()

    # --- picking ---------------------------------------------------------------------

    def set_test_set(self, images: np.ndarray, labels: np.ndarray, dataset: Dataset) -> None:
        """Pick from another data set's test images; draw in its image world (size, colour)."""
        self._images, self._labels = images, labels
        if dataset.shape != self.dataset.shape:
            # A start of another image world is no start here (the window picks a new one).
            self.start_image, self.test_index = None, None
            self._base_index = self._base_image = None
        self.dataset = dataset
        self.class_names, self.set_title = list(dataset.class_names), dataset.title
        self.index_caption.setText(f"{dataset.title} test #")
        with QSignalBlocker(self.dataset_box):
            self.dataset_box.setCurrentIndex(max(0, self.dataset_box.findData(dataset.name)))
        with QSignalBlocker(self.index), QSignalBlocker(self.class_filter):
            self.index.setMaximum(len(labels) - 1)
            self.class_filter.clear()
            self.class_filter.addItem("any class", None)
            for c, name in enumerate(self.class_names):
                self.class_filter.addItem(f"class {name}", c)
        for w in (self.index, self.pick_button, self.class_filter, self.random_button):
            w.setEnabled(True)
        if self.canvas.colour_mode != dataset.is_colour:
            self.canvas.set_colour_mode(dataset.is_colour)
        self.colour_button.setVisible(dataset.is_colour)
        self.preview.setToolTip(f"The {dataset.size[0]}×{dataset.size[1]} image the models get "
                                f"(MNIST-style: the drawing scaled into a box and centred by mass)")

    def _show_brush_colour(self) -> None:
        c = self.canvas.brush_colour
        self.colour_button.setStyleSheet(f"QPushButton {{ border-left: 14px solid {c.name()}; }}")

    def set_brush_colour(self, colour: QColor) -> None:
        """The colour of the next strokes in a colour world."""
        self.canvas.set_brush_colour(colour)
        self._show_brush_colour()

    def _ask_brush_colour(self) -> None:
        colour = QColorDialog.getColor(self.canvas.brush_colour, self, "Brush colour")
        if colour.isValid():
            self.set_brush_colour(colour)

    def show_dataset(self, name: str) -> None:
        """Show data set ``name`` in the box again (a switch to another was refused)."""
        with QSignalBlocker(self.dataset_box):
            self.dataset_box.setCurrentIndex(max(0, self.dataset_box.findData(name)))

    def _describe(self, index: int) -> str:
        return f"{self.set_title} test #{index}: true label <b>{self.class_names[int(self._labels[index])]}</b>"

    def pick_example(self, index: int) -> None:
        """Use MNIST test digit ``index`` as the start image (exact values, no preprocessing)."""
        if self._images is None:
            return
        index = int(index)
        if not 0 <= index < len(self._images):
            raise IndexError(f"test digit index must be in 0..{len(self._images) - 1}, got {index}")
        with QSignalBlocker(self.index):
            self.index.setValue(index)
        image = self._images[index].astype(np.float32) / 255.0
        self.canvas.set_background(image)
        self._base_index, self._base_image = index, image
        self.true_label.setText(self._describe(index))
        self._set_start(image, index, None)

    def pick_random(self) -> int | None:
        """Pick a random test digit of the class in the filter (any class by default)."""
        if self._labels is None:
            return None
        wanted = self.class_filter.currentData()
        pool = np.arange(len(self._labels)) if wanted is None else np.flatnonzero(self._labels == wanted)
        index = int(self._rng.choice(pool))
        self.pick_example(index)
        return index

    def set_start_image(self, image: np.ndarray, test_index: int | None = None) -> None:
        """Use an exact image of the data set (a replayed run) as the start."""
        image = np.array(image, dtype=np.float32)
        self.canvas.set_background(image)
        self._base_index, self._base_image = test_index, image
        if test_index is not None and self._labels is not None and test_index < len(self._labels):
            self.true_label.setText(self._describe(test_index))
        self._set_start(image, test_index, None)

    # --- drawing ---------------------------------------------------------------------

    def _on_canvas_drawing_changed(self) -> None:
        if self.canvas.is_empty():
            self._base_index = self._base_image = None
            self.true_label.setText("")
            self._set_start(None, None, "the canvas is empty: draw a digit first")
            return
        if self._base_image is not None and self.canvas.stroke_count == 0:
            # Undo took away every stroke drawn over a picked digit: back to its exact values.
            self._set_start(self._base_image, self._base_index, None)
            return
        try:
            image = drawing_to_image(self.canvas.ink(), self.dataset.shape)
        except EmptyDrawingError as exc:
            self._set_start(None, None, str(exc))
            return
        if self._base_index is not None:
            self.true_label.setText(f"{self.set_title} test #{self._base_index}, edited by hand")
        self._set_start(image, None, None)

    def _set_start(self, image: np.ndarray | None, index: int | None, error: str | None) -> None:
        self.start_image = image
        self.test_index = index
        self.error = error
        if image is None:
            self.source_label.setText(f"<i>{error}</i>")
        elif index is not None:
            self.source_label.setText(f"Start: {self.set_title} test image #{index}")
        else:
            self.source_label.setText(f"Start: your drawing, preprocessed like {self.set_title}")
        self._show_preview()
        self.start_changed.emit()

    def _show_preview(self) -> None:
        shape = self.dataset.size if self.dataset.channels == 1 else self.dataset.shape
        image = self.start_image if self.start_image is not None else np.zeros(shape, np.float32)
        self.preview.setPixmap(image_to_pixmap(image, max(1, PREVIEW_SIDE // image.shape[-1])))

    def set_predictions_html(self, html: str) -> None:
        self.predictions_label.setText(html)

    def show_predictions(self, predictions) -> None:
        """Each model's prediction for the start (a list of ``StartPrediction``), in one line."""
        lines = []
        for p in predictions:
            if p.error is not None:
                lines.append(f"{p.name}: <span style='color:#e57373'>{p.error}</span>")
            else:
                lines.append(f"{p.name}: <b>{self.class_names[p.predicted]}</b> ({100 * p.probs[p.predicted]:.1f}%)")
        self.set_predictions_html("Models predict: " + " · ".join(lines) if lines else "")
