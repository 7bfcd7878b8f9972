"""The Gallery tab: the K×K source→target grids of the ticked models, computed in the background.

The same grids as ``trav-gui gallery`` (:mod:`trav_gui.engine.output.gallery`): row r starts from
the first test image of class r of the data set on screen, column c is the target, the diagonal
is the start. Or one row: the Traversal tab's start (a drawing or a chosen test image) to every
other class. A data set of more than 12 classes shows the classes chosen in the tab's class
field. All traversals of all models run as one batch in a QThread, with a progress bar and a
cancel button; the window stays responsive, and the picture can be saved as PNG.

With realism available, every cell is framed by the independent judge's verdict (green: a
real-looking target; amber: the judge agrees but the image is further from real ones than 90 %
of real images are; red: the judge says another class). Clicking a cell asks the window to
open that traversal in the Traversal tab (:attr:`GalleryTab.cell_opened`).

The **success map** (:mod:`trav_gui.engine.output.successmap`) of the ticked models is computed
here too, in the background with progress and cancel, and saved into a chosen folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
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
from trav_gui.engine.models.recipes import Guided, retry_note
from trav_gui.engine.output.gallery import (
    MAX_GALLERY_CLASSES,
    Gallery,
    cell_at,
    gallery_classes,
    render_galleries_side_by_side,
    run_gallery,
)
from trav_gui.engine.output.successmap import (
    SuccessMapCancelled,
    render_successmap,
    run_successmap,
)
from trav_gui.qt.jobs import BackgroundJob, JobCancelled

__all__ = ["GalleryTab"]

ModelsProvider = Callable[[], "tuple[list[nn.Module], list[str]] | None"]
# The Traversal tab's start: (image as frames hold it, its class or None, its test index or -1), or None.
StartProvider = Callable[[], "tuple[np.ndarray, int | None, int] | None"]
ROWS_PER_CLASS, ROW_FROM_START = "one start per class", "the Traversal tab's start"


def _compute(models: Sequence[nn.Module], names: Sequence[str], config: TraversalConfig, dataset: str,
             classes: Sequence[int], scorer=None, start=None):
    """The job: every traversal, the judge's verdicts, then the picture (here, not on the GUI thread)."""

    def run(progress, _cancelled):
        image, label, index = start if start is not None else (None, None, -1)
        gallery = run_gallery(models, names, config, progress=lambda step, total: progress(step, total, ""),
                              dataset=dataset, classes=classes, scorer=scorer, start=image, start_class=label,
                              start_index=index)
        return gallery, render_galleries_side_by_side(gallery)

    return run


def _compute_maps(models: Sequence[nn.Module], names: Sequence[str], config: TraversalConfig, dataset: str,
                  per_class: int, folder: Path, scorer=None):
    """The job: the success map of each model in turn, saved into ``folder``; their pictures stacked."""

    def run(progress, cancelled):
        maps = []
        for i, (model, name) in enumerate(zip(models, names)):
            def each(done, total, what, i=i, name=name):
                progress(i * total + done, len(models) * total, f"{name}: {what}")

            try:
                maps.append(run_successmap(model, name, dataset, per_class, config, folder, scorer=scorer,
                                           progress=each, should_stop=cancelled))
            except SuccessMapCancelled:
                raise JobCancelled from None
        pictures = [render_successmap(m) for m in maps]
        picture = Image.new("RGB", (max(p.width for p in pictures), sum(p.height + 10 for p in pictures)), "white")
        y = 0
        for p in pictures:
            picture.paste(p, (0, y))
            y += p.height + 10
        return maps, picture

    return run


class _Picture(QLabel):
    """The shown picture, reporting where it was clicked (in picture pixels)."""

    clicked = Signal(int, int)

    def mousePressEvent(self, event) -> None:  # Qt's name
        if event.button() == Qt.MouseButton.LeftButton:
            pos = event.position()
            self.clicked.emit(int(pos.x()), int(pos.y()))
        super().mousePressEvent(event)


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

    scorer_provider : returns the data set's realism scorer, or None (cells are then not judged).
    start_provider : returns the Traversal tab's start (see ``StartProvider``), for a one-row gallery.

    Signals
    -------
    gallery_finished(ok) : a computation ended (True: a gallery is shown).
    successmap_finished(ok) : a success map computation ended (True: its maps are shown and saved).
    cell_opened(start image, test index or -1, target, model name) : a cell was clicked.
    """

    gallery_finished = Signal(bool)
    successmap_finished = Signal(bool)
    cell_opened = Signal(object, int, int, str)

    def __init__(self, models_provider: ModelsProvider, config_provider: Callable[[], TraversalConfig],
                 parent: QWidget | None = None, scorer_provider: Callable[[], object] | None = None,
                 start_provider: StartProvider | None = None) -> None:
        super().__init__(parent)
        self._models_provider = models_provider
        self._config_provider = config_provider
        self._scorer_provider = scorer_provider or (lambda: None)
        self._start_provider = start_provider or (lambda: None)
        self.successmaps = None  # the SuccessMaps last computed
        self._pending_start = self._gallery_start = None  # a one-row gallery's start image
        self.successmap_folder: Path | None = None
        self._job: BackgroundJob | None = None
        self._notes = ""  # the last gallery's notes (a recipe's retry without room), for its status line
        self._ending: set[BackgroundJob] = set()  # reported, thread still ending
        self.gallery: Gallery | None = None
        self.image = None  # the rendered PIL image of self.gallery
        self.dataset = DEFAULT_DATASET

        self.steps = QSpinBox()
        self.steps.setRange(1, 2000)
        self.steps.setValue(200)
        self.steps.setToolTip("Steps of every traversal (step size, norm and objective come from Settings)")
        self.rows = QComboBox()
        self.rows.addItems([ROWS_PER_CLASS, ROW_FROM_START])
        self.rows.setToolTip("Rows: the first test image of every class, or one row from the start you drew or "
                             "picked in the Traversal tab")
        self.compute_button = QPushButton("Compute gallery")
        self.per_class = QSpinBox()
        self.per_class.setRange(1, 100)
        self.per_class.setValue(20)
        self.per_class.setToolTip("Success map: start images per class (each traversed to every other class)")
        self.successmap_button = QPushButton("Success map…")
        self.successmap_button.setToolTip("For each ticked model: which source → target pairs end as a real-looking "
                                          "target, judged at the confident point; saved as PNG + CSV into a folder "
                                          "(a stopped map continues there)")
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
        self.picture = _Picture()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidget(self.picture)
        scroll.setWidgetResizable(True)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Steps"))
        bar.addWidget(self.steps)
        bar.addWidget(self.classes_caption)
        bar.addWidget(self.classes)
        bar.addWidget(self.rows)
        for w in (self.compute_button, self.cancel_button, self.save_button):
            bar.addWidget(w)
        bar.addStretch(1)
        maps = QHBoxLayout()
        maps.addWidget(QLabel("Starts per class"))
        maps.addWidget(self.per_class)
        maps.addWidget(self.successmap_button)
        maps.addWidget(self.progress, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 6, 6, 6)
        layout.addLayout(bar)
        layout.addLayout(maps)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)

        self.compute_button.clicked.connect(self.compute)
        self.successmap_button.clicked.connect(self._ask_successmap)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(self._ask_save)
        self.picture.clicked.connect(self.open_cell_at)
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
        start = None
        try:
            config = replace(self._config_provider(), steps=self.steps.value(), stop_at_prob=None)
            classes = self.chosen_classes()
            if self.rows.currentText() == ROW_FROM_START:
                start = self._start_provider()
                if start is None:
                    raise ValueError("the Traversal tab has no start image: draw one or pick a test image")
        except ValueError as exc:
            self.status.setText(f"Cannot compute: {exc}")
            return False
        notes = [retry_note(n, m.recipe, config.steps) for m, n in zip(models, names) if isinstance(m, Guided)]
        self._notes = "".join(f" Note: {note}." for note in notes if note)
        job = BackgroundJob("gallery", _compute(models, names, config, self.dataset, classes,
                                                self._scorer_provider(), start), parent=self)
        self._pending_start = None if start is None else np.array(start[0], np.float32)
        count = len(classes) - 1 if start is not None else len(classes) * (len(classes) - 1)
        self._start_job(job, config.steps, f"Computing {count} traversals × {len(models)} models, {config.steps} "
                                           f"steps…{self._notes}", self._on_ready, self._on_failed)
        return True

    def compute_successmap(self, folder: str | Path) -> bool:
        """Start computing the success map of each ticked model into ``folder`` (continuing the maps
        of the same settings found there); False if it could not start."""
        if self._job is not None:
            return False
        chosen = self._models_provider()
        if chosen is None:
            return False
        scorer = self._scorer_provider()
        if scorer is None:
            self.status.setText("Cannot compute a success map: realism (the judge and the real images) is not "
                                f"available for {get_dataset(self.dataset).title}")
            return False
        models, names = chosen
        config = replace(self._config_provider(), steps=self.steps.value(), stop_at_prob=None)
        self.successmap_folder = Path(folder)
        job = BackgroundJob("success map", _compute_maps(models, names, config, self.dataset, self.per_class.value(),
                                                         self.successmap_folder, scorer), parent=self)
        self._start_job(job, 1, f"Computing the success map of {', '.join(names)}: {self.per_class.value()} starts "
                                f"per class, {config.steps} steps, into {folder}…", self._on_maps_ready, self._on_maps_failed)
        return True

    def _start_job(self, job: BackgroundJob, total: int, message: str, on_ready, on_failed) -> None:
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._fill_progress)  # also for a job with nothing left to do (maps on disk)
        job.succeeded.connect(on_ready)
        job.failed.connect(on_failed)
        job.thread_finished.connect(lambda: self._forget(job))
        self._job = job
        self.progress.setRange(0, total)
        self.progress.setValue(0)
        self.status.setText(message)
        job.start()
        self._update_buttons()

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

    @Slot(object)
    def _fill_progress(self, _result) -> None:
        self.progress.setFormat("%p%")
        self.progress.setValue(self.progress.maximum())

    @Slot(int, int, str)
    def _on_progress(self, step: int, total: int, what: str) -> None:
        if self.progress.maximum() != total:
            self.progress.setRange(0, total)
        self.progress.setFormat(f"{what}  %p%" if what else "%p%")
        self.progress.setValue(step)

    @Slot(object)
    def _on_ready(self, result) -> None:
        gallery, image = result
        self._reported()
        self.gallery, self._gallery_start = gallery, self._pending_start
        self.image = image
        self.picture.setPixmap(_to_pixmap(self.image))
        off_diagonal = gallery.traversed()
        flipped = [(gallery.first_flip[i][off_diagonal] >= 0).mean() for i in range(len(gallery.model_names))]
        summary = ", ".join(f"{n}: {100 * f:.0f} % reached the target" for n, f in zip(gallery.model_names, flipped))
        judged = ""
        if gallery.success is not None:
            real = ", ".join(f"{n}: {int(gallery.success[i].sum())}" for i, n in enumerate(gallery.model_names))
            judged = (f" Real-looking targets (green frames: the judge agrees and the image is as near to real ones "
                      f"as 90 % of real images are): {real}.")
        self.status.setText(f"{gallery.config.steps} steps of {gallery.config.step_size} "
                            f"{gallery.config.norm.upper()}. {summary}. Red captions: not (yet) the target.{judged} "
                            f"Click a cell to open its traversal.{self._notes}")
        self._update_buttons()
        self.gallery_finished.emit(True)

    @Slot(object)
    def _on_maps_ready(self, result) -> None:
        maps, image = result
        self._reported()
        self.successmaps, self.image, self.gallery = maps, image, None
        self.picture.setPixmap(_to_pixmap(image))
        overall = ", ".join(f"{m.name}: {100 * m.overall():.0f} % ({100 * m.overall(last=True):.0f} % at the last frame)"
                            for m in maps)
        self.status.setText(f"Success maps saved in {self.successmap_folder} (PNG, CSV per cell and per traversal). "
                            f"Success overall: {overall}.")
        self._update_buttons()
        self.successmap_finished.emit(True)

    @Slot(str)
    def _on_maps_failed(self, message: str) -> None:
        self._reported()
        self.status.setText("Success map stopped; the finished start classes are kept in "
                            f"{self.successmap_folder}: compute it again there to continue."
                            if message == "cancelled" else f"Success map failed: {message}")
        self.progress.setValue(0)
        self._update_buttons()
        self.successmap_finished.emit(False)

    # ------------------------------------------------------------------ opening a cell

    def open_cell_at(self, x: int, y: int) -> bool:
        """Open the traversal of the gallery cell at picture position (x, y); False off a cell."""
        if self.gallery is None:
            return False
        hit = cell_at(self.gallery, x, y)
        if hit is None:
            return False
        model, row, column = hit
        g = self.gallery
        index, target = g.cell(row, column)
        if g.rows[row] == target:
            return False  # the start itself
        start = self._gallery_start if g.start_classes is not None else g.images[model, row, row]
        self.cell_opened.emit(np.array(start), index, target, g.model_names[model])
        return True

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
        self.successmap_button.setEnabled(not running)
        self.steps.setEnabled(not running)
        self.rows.setEnabled(not running)
        self.per_class.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.save_button.setEnabled(self.image is not None and not running)

    # ------------------------------------------------------------------ saving

    def save_png(self, path: str | Path) -> Path:
        """Write the shown galleries as one PNG (atomically)."""
        if self.image is None:
            raise RuntimeError("no gallery computed yet")
        return save_png(path, self.image)

    def _ask_successmap(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the success maps in", str(self.successmap_folder or ""))
        if folder:
            self.compute_successmap(folder)

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
