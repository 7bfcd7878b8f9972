"""The Gallery tab: the K×K source→target grids of the ticked models, computed in the background.

The same grids as ``trav-gui gallery`` (:mod:`trav_gui.engine.output.gallery`): row r starts from
the first test image of class r of the data set on screen, column c is the target, the diagonal
is the start. A data set of more than 12 classes shows the classes chosen in the tab's class
field. All traversals of all models run as one batch in a QThread, with a progress bar and a
cancel button; the window stays responsive, and the picture can be saved as PNG.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import DEFAULT_DATASET, get_dataset
from trav_gui.engine.files import save_png
from trav_gui.engine.output.gallery import (
    MAX_GALLERY_CLASSES,
    Gallery,
    gallery_classes,
    render_galleries_side_by_side,
    run_gallery,
)
from trav_gui.qt.jobs import BackgroundJob

__all__ = ["GalleryTab"]

ModelsProvider = Callable[[], "tuple[list[nn.Module], list[str]] | None"]


def _compute(models: Sequence[nn.Module], names: Sequence[str], config: TraversalConfig, dataset: str,
             classes: Sequence[int]):
    """The job: every traversal, then the picture (here, not on the GUI thread)."""

    def run(progress, _cancelled):
        gallery = run_gallery(models, names, config, progress=lambda step, total: progress(step, total, ""),
                              dataset=dataset, classes=classes)
        return gallery, render_galleries_side_by_side(gallery)

    return run


def _to_pixmap(image) -> QPixmap:
    """A PIL RGB image as a QPixmap (copied, so the numpy buffer may go)."""
    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    h, w, _ = rgb.shape
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy())


class GalleryTab(QWidget):
    """Compute and show the galleries of the models ``models_provider`` returns.

    Parameters
    ----------
    models_provider : returns ``(models, names)`` of the ticked models, or None (after
        telling the user why) when there are none.
    config_provider : returns the traversal settings; the tab overrides their steps.

    Signals
    -------
    gallery_finished(ok) : a computation ended (True: a gallery is shown).
    """

    gallery_finished = Signal(bool)

    def __init__(self, models_provider: ModelsProvider, config_provider: Callable[[], TraversalConfig],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models_provider = models_provider
        self._config_provider = config_provider
        self._job: BackgroundJob | None = None
        self._ending: set[BackgroundJob] = set()  # reported, thread still ending
        self.gallery: Gallery | None = None
        self.image = None  # the rendered PIL image of self.gallery
        self.dataset = DEFAULT_DATASET

        self.steps = QSpinBox()
        self.steps.setRange(1, 2000)
        self.steps.setValue(200)
        self.steps.setToolTip("Steps of every traversal (step size, norm and objective come from Settings)")
        self.compute_button = QPushButton("Compute gallery")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save PNG…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.classes = QLineEdit()
        self.classes.setToolTip(f"The classes to show, 2 to {MAX_GALLERY_CLASSES} numbers, e.g. 0 3 5 7")
        self.classes_caption = QLabel("Classes")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidget(self.picture)
        scroll.setWidgetResizable(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Steps"))
        bar.addWidget(self.steps)
        bar.addWidget(self.classes_caption)
        bar.addWidget(self.classes)
        for w in (self.compute_button, self.cancel_button, self.save_button):
            bar.addWidget(w)
        bar.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)

        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._ask_save)
        self.set_dataset(DEFAULT_DATASET)
        self._update_buttons()

    def set_dataset(self, name: str) -> None:
        """Compute galleries of data set ``name`` from now on; a class field appears for more than
        :data:`MAX_GALLERY_CLASSES` classes (its first ones chosen)."""
        ds = get_dataset(name)
        self.dataset = ds.name
        many = ds.num_classes > MAX_GALLERY_CLASSES
        self.classes.setText(" ".join(map(str, gallery_classes(ds.name))))
        self.classes.setVisible(many)
        self.classes_caption.setVisible(many)
        g = len(gallery_classes(ds.name))
        self.status.setText(f"The {g * (g - 1)} traversals of every ticked model, one batch: rows start from the "
                            f"first {ds.title} test image of each class, columns are the targets.")

    def chosen_classes(self) -> list[int]:
        """The classes the next gallery shows (ValueError naming the problem for a bad class field)."""
        if get_dataset(self.dataset).num_classes <= MAX_GALLERY_CLASSES:
            return gallery_classes(self.dataset)
        try:
            numbers = [int(t) for t in self.classes.text().replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"classes must be numbers, e.g. 0 3 5 7; got {self.classes.text()!r}") from None
        return gallery_classes(self.dataset, numbers)

    # ------------------------------------------------------------------ computing

    def is_running(self) -> bool:
        """A computation is under way (it has not reported yet)."""
        return self._job is not None

    def compute(self) -> bool:
        """Start computing the galleries of the ticked models; False if it could not start."""
        if self._job is not None:
            return False
        chosen = self._models_provider()
        if chosen is None:
            return False
        models, names = chosen
        try:
            config = replace(self._config_provider(), steps=self.steps.value(), stop_at_prob=None)
            classes = self.chosen_classes()
        except ValueError as exc:
            self.status.setText(f"Cannot compute: {exc}")
            return False
        job = BackgroundJob("gallery", _compute(models, names, config, self.dataset, classes), parent=self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_ready)
        job.failed.connect(self._on_failed)
        job.thread_finished.connect(lambda: self._forget(job))
        self._job = job
        self.progress.setRange(0, config.steps)
        self.progress.setValue(0)
        self.status.setText(f"Computing {len(classes) * (len(classes) - 1)} traversals × {len(models)} models, "
                            f"{config.steps} steps…")
        job.start()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def shutdown(self) -> None:
        """Cancel a computation and wait for every thread (the window calls this when closing)."""
        for job in [j for j in (self._job, *self._ending) if j is not None]:
            job.stop_and_wait()
        self._job = None
        self._ending.clear()

    def _reported(self) -> None:
        # The job has reported; its thread ends shortly (a new computation may start now).
        if self._job is not None:
            self._ending.add(self._job)
        self._job = None

    def _forget(self, job: BackgroundJob) -> None:
        self._ending.discard(job)
        job.deleteLater()

    @Slot(int, int, str)
    def _on_progress(self, step: int, total: int, _what: str) -> None:
        self.progress.setValue(step)

    @Slot(object)
    def _on_ready(self, result) -> None:
        gallery, image = result
        self._reported()
        self.gallery = gallery
        self.image = image
        self.picture.setPixmap(_to_pixmap(self.image))
        off_diagonal = ~np.eye(len(gallery.classes), dtype=bool)
        flipped = [(gallery.first_flip[i][off_diagonal] >= 0).mean() for i in range(len(gallery.model_names))]
        summary = ", ".join(f"{n}: {100 * f:.0f} % reached the target" for n, f in zip(gallery.model_names, flipped))
        self.status.setText(f"{gallery.config.steps} steps of {gallery.config.step_size} "
                            f"{gallery.config.norm.upper()}. {summary}. Red captions: not (yet) the target.")
        self._update_buttons()
        self.gallery_finished.emit(True)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._reported()
        self.status.setText("Gallery cancelled." if message == "cancelled" else f"Gallery failed: {message}")
        self.progress.setValue(0)
        self._update_buttons()
        self.gallery_finished.emit(False)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.compute_button.setEnabled(not running)
        self.steps.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(self.image is not None and not running)

    # ------------------------------------------------------------------ saving

    def save_png(self, path: str | Path) -> Path:
        """Write the shown galleries as one PNG (atomically)."""
        if self.image is None:
            raise RuntimeError("no gallery computed yet")
        return save_png(path, self.image)

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save gallery", "gallery.png", "PNG images (*.png)")
        if not path:
            return
        try:
            self.save_png(path)
        except OSError as exc:
            self.status.setText(f"Could not save {path}: {exc}")
        else:
            self.status.setText(f"Saved {path}")
