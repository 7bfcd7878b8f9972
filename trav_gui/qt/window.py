"""The main window: input, target, settings and models on the left; model columns on the right.

The window is layout and wiring: it turns widget state into a ``RunContext`` and hands it
to the ``RunController`` (worker threads, frames received); ``RunDisplay`` draws them at a
bounded rate, ``Exporter`` exports, and the engine's ``ModelCache`` holds loaded models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from trav_gui import __version__
from trav_gui.engine.data.datasets import (
    COLORED_MNIST,
    DEFAULT_DATASET,
    FASHION_MNIST,
    MNIST,
    get_dataset,
    stored_shape,
    test_set,
)
from trav_gui.engine.core.devices import default_device
from trav_gui.engine.models.cache import ModelCache, predict_start
from trav_gui.engine.models.card import ModelEntry
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import retry_notes
from trav_gui.engine.realism import Scorers
from trav_gui.engine.runs.context import RunContext
from trav_gui.engine.runs.history import RunHistory
from trav_gui.paths import models_dir, user_models_dir
from trav_gui.qt.actions import WindowActions, open_error_dialog
from trav_gui.qt.add_model import add_model_file, ask_add_model
from trav_gui.qt.device_choice import DeviceMixin
from trav_gui.qt.export_job import Exporter
from trav_gui.qt.gallery_tab import GalleryTab
from trav_gui.qt.input_panel import InputPanel
from trav_gui.qt.model_selector import ModelSelector, describe_card
from trav_gui.qt.plots import ComparisonView
from trav_gui.qt.process_worker import worker_factory
from trav_gui.qt.run_controller import RunController
from trav_gui.qt.run_display import RunDisplay
from trav_gui.qt.run_files import RunFilesMixin
from trav_gui.qt.settings_panel import SettingsPanel
from trav_gui.qt.target_picker import TargetPicker
from trav_gui.qt.transport import Timeline, Transport
from trav_gui.qt.wheel_guard import guard_wheel

__all__ = ["MainWindow"]

DEFAULT_MODELS = {MNIST: ("robust", "standard"), FASHION_MNIST: ("fashion-robust", "fashion-standard"),
                  COLORED_MNIST: ("colored-robust", "colored-standard")}
# The window's size where the screen has room for it; on a smaller one it fills the free area,
# less room for the window frame and title bar. Its minimum fits a 1366×768 laptop's free
# area (1366×740 under a panel; tests/test_gui_layout.py).
PREFERRED_SIZE = (1560, 960)
FRAME_ALLOWANCE = (0, 30)


class MainWindow(RunFilesMixin, DeviceMixin, QMainWindow):
    """The traversal visualizer.

    Parameters
    ----------
    models_folder : where to look for ``.safetensors`` files with cards; the shipped
        ``resources/models`` by default.
    device : ``"cpu"``, ``"cuda"``...; CUDA when available by default (Run → Device changes it).
    digits : (images uint8 (N, 28, 28), labels (N,)) for the example picker; the shipped
        MNIST test digits by default, None entries disable the picker.
    compute : where runs are computed: ``"process"`` (the compute process, so that drawing never
        holds a run up) or ``"thread"``; by default ``$TRAV_GUI_COMPUTE``, else ``"process"``.

    Signals
    -------
    run_started(run_id)
    run_finished(reason) : the run on screen ended (``"completed"``, ``"stopped"``,
        ``"failed"``) and its last frames are drawn.
    export_finished(folder), export_failed(message)
    error_shown(message) : an error dialog was opened.
    """

    run_started = Signal(int)
    run_finished = Signal(str)
    export_finished = Signal(str)
    export_failed = Signal(str)
    error_shown = Signal(str)

    def __init__(self, models_folder: str | Path | None = None, device: str | None = None,
                 digits: tuple[np.ndarray, np.ndarray] | None | bool = True, compute: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"Traversal visualizer {__version__}")
        self.models_folder = Path(models_folder) if models_folder is not None else models_dir()
        self.device = device or default_device()
        self.models = ModelCache(self.device)
        self.scorers = Scorers(self.device)
        self.workers = worker_factory(compute, self.device)  # the compute process, or None: threads
        self.runs = RunController(self, **({"worker_factory": self.workers} if self.workers else {}))
        self._replay_config = None
        self._start_probs: dict[str, np.ndarray] = {}
        self._close_after_export = False
        self.error_dialog: QMessageBox | None = None
        self.last_error: str | None = None

        if digits is True:
            try:
                digits = test_set(MNIST)
            except (OSError, ValueError):
                digits = None
        images, labels = digits if digits else (None, None)

        self.input_panel = InputPanel(images, labels)
        self.target_picker = TargetPicker()
        self.settings = SettingsPanel()
        self.selector = ModelSelector()
        self.view = ComparisonView()
        self._build_layout()
        a = self.menu_actions = WindowActions(self.menuBar(), self)
        self.realism_action = a.realism  # the old name, which benchmarks/bench_app.py toggles
        for action, slot in ((a.add_model, lambda _=False: ask_add_model(self, self.add_model_file)),
                             (a.open_run, self.ask_open_run), (a.export, self.ask_export), (a.quit, self.close),
                             (a.play, self.toggle_play), (a.step, self.step_once), (a.reset, self.reset),
                             (a.stop, self.stop), (a.jump, self.jump_to_most_realistic)):
            action.triggered.connect(slot)
        a.target_chosen.connect(self.set_target)
        self.display = RunDisplay(self.runs, self.view, self._timeline, self.statusBar(), self)
        self.status_step = self.display.step_label
        self._build_device_menu(a.run_menu)
        self.exporter = Exporter(self.statusBar(), self)

        self.input_panel.start_changed.connect(self._on_start_changed)
        self.input_panel.dataset_changed.connect(self.set_dataset)
        self.target_picker.target_changed.connect(self._on_target_changed)
        self.selector.selection_changed.connect(self._on_selection_changed)
        self.settings.settings_changed.connect(lambda: setattr(self, "_replay_config", None))
        self.settings.speed_changed.connect(lambda sps: self.runs.set_speed(sps))
        self.runs.failed.connect(lambda message: self.show_error("The run stopped", message))
        self.runs.finished.connect(self._on_run_finished)
        self.runs.status_changed.connect(self._update_controls)
        self.runs.frames_added.connect(lambda: self.menu_actions.export.setEnabled(True))
        self.exporter.export_finished.connect(self.export_finished)
        self.exporter.export_failed.connect(self._on_export_failed)
        self.exporter.idle.connect(self._on_export_idle)

        self.dataset = DEFAULT_DATASET
        self.selector.populate(self.models_folder)
        self.selector.populate(user_models_dir())  # what File → Add model… kept, on every start
        self.selector.show_dataset(self.dataset, DEFAULT_MODELS[self.dataset])
        self.fit_to_screen()

    def fit_to_screen(self) -> None:
        """Open at the preferred size where the screen has room, else filling its free area (a
        1366×768 laptop; never below the window's minimum): the left panel scrolls and the plots
        shrink to fit. Centred when it fits."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            self.resize(*PREFERRED_SIZE)
            return
        free = screen.availableGeometry()
        # The frame (title bar, borders) is not yet known before the first show: leave room for it.
        room_w, room_h = free.width() - FRAME_ALLOWANCE[0], free.height() - FRAME_ALLOWANCE[1]
        self.resize(min(PREFERRED_SIZE[0], room_w), min(PREFERRED_SIZE[1], room_h))  # Qt keeps the minimum
        if self.width() <= room_w and self.height() <= room_h:
            self.move(free.left() + (room_w - self.width()) // 2, free.top() + (room_h - self.height()) // 2)

    # ------------------------------------------------------------------ construction

    def _build_layout(self) -> None:
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 6, 6)
        for w in (self.input_panel, self.target_picker, self.settings, self.selector):
            left_layout.addWidget(w)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFixedWidth(430)
        self.left_scroll = scroll
        guard_wheel(left)  # the wheel scrolls the panel, not the setting under the pointer

        self.transport = Transport()
        self.play_button, self.step_button = self.transport.play_button, self.transport.step_button
        self.stop_button = self.transport.stop_button
        for b in self.target_picker.buttons:
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._timeline = timeline = Timeline()
        self.timeline, self.timeline_label = timeline.slider, timeline.label

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 6, 6, 6)
        right_layout.addWidget(self.transport)
        right_layout.addWidget(self.view, 1)
        right_layout.addWidget(timeline)

        self.gallery_tab = GalleryTab(
            self._gallery_models, self.settings.config,
            scorer_provider=lambda: self.scorers.get(self.dataset) if self.realism_action.isChecked() else None,
            start_provider=self._gallery_start)
        self.gallery_tab.cell_opened.connect(self.open_gallery_cell)
        self.tabs = QTabWidget()
        self.tabs.addTab(right, "Traversal")
        self.tabs.addTab(self.gallery_tab, "Gallery (10×10)")

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.transport.play_button.clicked.connect(self.toggle_play)
        self.transport.step_button.clicked.connect(self.step_once)
        self.transport.reset_button.clicked.connect(self.reset)
        self.transport.stop_button.clicked.connect(self.stop)

    # ------------------------------------------------------------------ models

    def _selected_models(self) -> tuple[list[ModelEntry], list[nn.Module]] | None:
        """The ticked models and their loaded modules; None (after an error dialog) on failure."""
        entries = self.selector.selected_entries()
        if not entries:
            self.show_error("No model", "No model is available. Add one with File → Add model…")
            return None
        try:
            return entries, [self.models.get(e.key) for e in entries]
        except ModelLoadError as exc:
            self.show_error("Cannot load model", str(exc))
            return None

    def _gallery_models(self) -> tuple[list[nn.Module], list[str]] | None:
        chosen = self._selected_models()
        return chosen and (chosen[1], [e.name for e in chosen[0]])

    def _gallery_start(self) -> tuple[np.ndarray, int | None, int] | None:
        """The start for a one-row gallery: (image, its class if a test image else None, test index or -1)."""
        image, index = self.input_panel.start_image, self.input_panel.test_index
        if image is None:
            return None
        label = None if index is None else int(test_set(self.dataset)[1][index])
        return image, label, -1 if index is None else index

    def open_gallery_cell(self, start: np.ndarray, test_index: int, target: int, model_name: str) -> None:
        """Open a gallery cell's traversal in the Traversal tab: its start and target, played."""
        if test_index >= 0:
            self.input_panel.pick_example(test_index)
        else:
            self.input_panel.set_start_image(start)
        self.set_target(target)
        self.tabs.setCurrentIndex(0)
        self.statusBar().showMessage(f"Gallery cell: {model_name}, start → {target}", 10_000)
        self.play()

    def add_model_file(self, path: str | Path) -> bool:
        """Check a ``.safetensors``, ``.onnx`` or ``.recipe`` file, keep it among the user models (listed on every
        start), list it and tick it if there is room; False (with a dialog) if it is refused."""
        return add_model_file(path, self.models, self.selector, self.dataset, self.device, self.show_error,
                              lambda text: self.statusBar().showMessage(text, 15_000))

    # ------------------------------------------------------------------ errors

    def show_error(self, title: str, message: str) -> None:
        """A window-modal message box that does not block the event loop."""
        self.error_dialog = open_error_dialog(self, title, message, self.error_dialog)
        self.last_error = message
        self.error_shown.emit(message)

    # ------------------------------------------------------------------ start, target, selection

    def _on_start_changed(self) -> None:
        self._leave_run()
        self._update_start_predictions()

    def _on_target_changed(self, target: int) -> None:
        self._leave_run()
        self._show_start()

    def set_dataset(self, name: str) -> bool:
        """Switch to data set ``name``: its test images, class names and models; False on error."""
        ds = get_dataset(name)
        try:
            images, labels = test_set(ds.name)
        except (OSError, ValueError) as exc:
            self.input_panel.show_dataset(self.dataset)
            self.show_error("Cannot switch data set", str(exc))
            return False
        self._leave_run()
        self.dataset = ds.name
        self.view.class_names = list(ds.class_names)
        self.view.image_size = ds.size
        self.input_panel.set_test_set(images, labels, ds)
        self.target_picker.set_class_names(ds.class_names, [ds.short(k) for k in range(ds.num_classes)])
        self.gallery_tab.set_dataset(ds.name)
        g = len(self.gallery_tab.chosen_classes())
        self.tabs.setTabText(1, f"Gallery ({g}×{g})")
        self.selector.show_dataset(ds.name, DEFAULT_MODELS.get(ds.name, ()))
        self.input_panel.pick_example(0)
        return True

    def set_target(self, target: int) -> None:
        """Choose the target class (as the buttons and keys 0–9 do)."""
        if target == self.target_picker.target and self.history is None:
            return
        self.target_picker.set_target(target)
        self._on_target_changed(target)

    def _on_selection_changed(self) -> None:
        self._leave_run()
        entries = self.selector.selected_entries()
        if not entries:
            self.view.show_message(
                "<b>No models found.</b><br><br>"
                f"The models folder {self.models_folder} holds no <code>.safetensors</code> "
                "file with a card.<br>Train the shipped ones (see README), or use "
                "<b>File → Add model…</b> to add a <code>.safetensors</code> or <code>.onnx</code> file.")
            self._update_controls()
            self.input_panel.set_predictions_html("")
            return
        self.view.set_models([e.name for e in entries], [describe_card(e.card) for e in entries])
        self._update_start_predictions()

    def _update_start_predictions(self) -> None:
        """Classify the start image with every ticked model; mark the predicted class."""
        self._start_probs = {}
        image = self.input_panel.start_image
        entries = self.selector.selected_entries()
        if image is None or not entries:
            self.input_panel.set_predictions_html("")
            self.target_picker.mark_predicted({})
            self._show_start()
            return
        predictions = predict_start(self.models, entries, image)
        self._start_probs = {p.name: p.probs for p in predictions if p.probs is not None}
        self.input_panel.show_predictions(predictions)
        self.target_picker.mark_predicted({n: int(p.argmax()) for n, p in self._start_probs.items()})
        self._show_start()

    def _show_start(self) -> None:
        """The columns before any run: the start image and its prediction, empty curves."""
        if self.history is not None:
            return
        image = self.input_panel.start_image
        blank = np.zeros(stored_shape(get_dataset(self.dataset)), np.float32)
        self.view.show_start(image if image is not None else blank,
                             self.target_picker.target, self._start_probs)
        self._update_controls()

    # ------------------------------------------------------------------ run control

    @property
    def history(self) -> RunHistory | None:
        """The frames of the run on screen (None when idle)."""
        return self.runs.history

    @property
    def run_status(self) -> str:
        """``idle``, ``playing``, ``paused``, ``completed``, ``stopped`` or ``failed``."""
        return self.runs.status

    @property
    def worker_running(self) -> bool:
        return self.runs.running

    def toggle_play(self) -> None:
        """Space: play, pause, resume; after the end of a run, play it again from the start."""
        if self.runs.running:
            self.runs.toggle()
        else:
            self.play()

    def play(self) -> bool:
        """Start a new run from the start image, playing; False (with a dialog) on bad input."""
        if self.runs.running:
            self.runs.resume()
            return True
        return self._start_run(paused=False)

    def pause(self) -> None:
        self.runs.pause()

    def step_once(self) -> None:
        """Right arrow: one step (pausing a playing run); starts a paused run if none is on."""
        if not self.runs.running and not self._start_run(paused=True):
            return
        self.runs.step_once()

    def stop(self) -> None:
        """Stop the run; its frames so far stay on screen to scrub and export."""
        self.runs.stop()

    def reset(self) -> None:
        """R: stop any run and go back to the start image with empty curves."""
        self._leave_run()

    def _start_run(self, paused: bool) -> bool:
        image = self.input_panel.start_image
        if image is None:
            self.show_error("No start image", self.input_panel.error or "draw a digit or pick one first")
            return False
        selected = self._selected_models()
        if selected is None:
            return False
        entries, models = selected
        try:
            config = self._replay_config or self.settings.config()
        except ValueError as exc:
            self.show_error("Invalid settings", str(exc))
            return False
        self._leave_run()
        target = self.target_picker.target
        context = RunContext(tuple(entries), image, self.input_panel.test_index, target, config)
        scorer = self.scorers.get(self.dataset) if self.realism_action.isChecked() else None
        self.view.reference = scorer.reference if scorer is not None else None
        self.view.begin_run(target, self._start_probs, config)
        context = self.runs.start(context, models, paused=paused,
                                  steps_per_second=self.settings.steps_per_second, scorer=scorer)
        notes = retry_notes(entries, models, config.steps)
        if notes:
            self.statusBar().showMessage(" · ".join(notes), 20_000)
        if self._start_probs and all(int(p.argmax()) == target for p in self._start_probs.values()):
            # Allowed on purpose: climbing the class it already has shows what the model
            # thinks makes a digit more of that digit.
            ds = get_dataset(self.dataset)
            name = ds.label(target)
            self.statusBar().showMessage(
                f"the models already predict {name}: this run makes the {ds.item} more of a {name}; "
                "pick another target to watch it change class", 10_000)
        self.display.start()
        self.run_started.emit(context.run_id)
        return True

    def _leave_run(self) -> None:
        """Stop the current run (if any) and clear its frames: back to the start image."""
        had_frames = self.history is not None
        self.runs.leave()
        if had_frames:
            self.display.clear()
        self._show_start()

    def _on_run_finished(self, reason: str) -> None:
        self.display.stop()
        self._update_controls()
        self.run_finished.emit(reason)

    def _update_controls(self) -> None:
        has_models = bool(self.selector.selected_entries())
        self.transport.show_state(self.runs.status, self.runs.running and self.runs.status == "playing",
                                  has_models, self.runs.running)
        for a in (self.menu_actions.play, self.menu_actions.step):
            a.setEnabled(has_models)
        self.menu_actions.export.setEnabled(self.history is not None and len(self.history) > 0)

    def jump_to_most_realistic(self) -> int | None:
        """M: show the step the judge-free rule calls most realistic (the first column that has one)."""
        best = next((s for s in (self.history.most_realistic() if self.history else []) if s is not None), None)
        if best is not None:
            self.scrub_to(int(np.flatnonzero(self.history.steps == best)[0]))
        return best

    def scrub_to(self, step_index: int) -> None:
        """Show frame ``step_index`` in every view (as dragging the timeline does)."""
        self.timeline.setValue(step_index)

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop every worker and wait for its thread: no thread outlives the window.

        During an export the window stays open until the export has finished (or is
        cancelled with its button), then closes: closing never loses an export.
        """
        if self.exporter.busy:
            self._close_after_export = True
            self.statusBar().showMessage("closing once the export has finished "
                                         "(Cancel export to close now)…")
            event.ignore()
            return
        self.display.timer.stop()
        self.runs.shutdown()
        if self.workers is not None:
            self.workers.close()
        self.gallery_tab.shutdown()
        super().closeEvent(event)
