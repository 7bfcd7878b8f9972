"""The main window: input, target, settings and models on the left; model columns on the right.

The window holds no traversal logic: it turns widget state into a ``TraversalConfig``,
starts a :class:`~trav_gui.qt.worker.TraversalRun`, appends the frames it receives to a
:class:`~trav_gui.qt.history.RunHistory`, and repaints from that history at most about 30
times a second.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from trav_gui import __version__
from trav_gui.engine.export import ModelRef, RunRecordError, build_run_record, read_run_record
from trav_gui.engine.models import ModelLoadError, list_models, load_model, read_card, sha256_of
from trav_gui.engine.traversal import TraversalConfig
from trav_gui.paths import models_dir
from trav_gui.qt.export_job import ExportJob
from trav_gui.qt.gallery_tab import GalleryTab
from trav_gui.qt.history import RunHistory
from trav_gui.qt.input_panel import InputPanel
from trav_gui.qt.model_selector import MAX_MODELS, ModelSelector, describe_card
from trav_gui.qt.plots import ComparisonView
from trav_gui.qt.settings_panel import MAX_UI_STEPS, SettingsPanel
from trav_gui.qt.target_picker import TargetPicker
from trav_gui.qt.worker import TraversalRun, TraversalWorker

__all__ = ["MainWindow"]

REDRAW_INTERVAL_MS = 33  # about 30 Hz, however fast frames arrive
# Drawing competes with the traversal for the CPU (and the GIL): the interval between
# redraws grows so that a redraw (setting the data plus painting) takes at most this share
# of the time, up to MAX_REDRAW_INTERVAL_MS. Measured on 2 cores (benchmarks/bench_app.py):
# a share of 1/3 left the run at 0.56 of the engine's speed, 1/5 at 0.63.
REDRAW_TIME_SHARE = 0.2
MAX_REDRAW_INTERVAL_MS = 250
DEFAULT_MODELS = ("robust", "standard")


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class MainWindow(QMainWindow):
    """The traversal visualizer.

    Parameters
    ----------
    models_folder : where to look for ``.safetensors`` files with cards; the shipped
        ``resources/models`` by default.
    device : ``"cpu"``, ``"cuda"``...; CUDA when available by default.
    digits : (images uint8 (K, 28, 28), labels (K,)) for the example picker; the shipped
        MNIST test digits by default, None entries disable the picker.

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
                 digits: tuple[np.ndarray, np.ndarray] | None | bool = True) -> None:
        super().__init__()
        self.setWindowTitle(f"Traversal visualizer {__version__}")
        self.models_folder = Path(models_folder) if models_folder is not None else models_dir()
        self.device = device or _default_device()
        self._loaded: dict[str, nn.Module] = {}
        self._sha: dict[str, str] = {}
        self._runs: dict[int, TraversalRun] = {}
        self._run: TraversalRun | None = None
        self._run_counter = 0
        self._run_info: dict | None = None
        self._run_status = "idle"  # idle | playing | paused | completed | stopped | failed
        self.history: RunHistory | None = None
        self._display_index: int | None = None  # None: follow the newest frame
        self._dirty = False
        self._replay_config: TraversalConfig | None = None
        self._start_probs: dict[str, np.ndarray] = {}
        self._rate = collections.deque(maxlen=120)  # (arrival time, frames) for steps/s
        self._steps_per_second = 0.0
        self._export: ExportJob | None = None
        self._close_after_export = False
        self.error_dialog: QMessageBox | None = None
        self.last_error: str | None = None

        if digits is True:
            digits = self._load_digits()
        images, labels = digits if digits else (None, None)

        self.input_panel = InputPanel(images, labels)
        self.target_picker = TargetPicker()
        self.settings = SettingsPanel()
        self.selector = ModelSelector()
        self.view = ComparisonView()
        self._build_layout()
        self._build_actions()
        self._build_status_bar()

        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._redraw)

        self.input_panel.start_changed.connect(self._on_start_changed)
        self.target_picker.target_changed.connect(self._on_target_changed)
        self.selector.selection_changed.connect(self._on_selection_changed)
        self.settings.settings_changed.connect(self._on_settings_changed)
        self.settings.speed_changed.connect(self._on_speed_changed)
        self.timeline.valueChanged.connect(self._on_timeline_moved)

        self._populate_models()
        self._on_selection_changed()
        self.resize(1560, 960)

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _load_digits() -> tuple[np.ndarray, np.ndarray] | None:
        from trav_gui.engine.data import test_digits

        try:
            return test_digits()
        except (OSError, KeyError, ValueError):
            return None

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

        self.play_button = QPushButton("▶ Play")
        self.step_button = QPushButton("Step ▸|")
        self.reset_button = QPushButton("⟲ Reset")
        self.stop_button = QPushButton("■ Stop")
        for b, tip in ((self.play_button, "Play / pause (Space)"), (self.step_button, "One step (Right arrow)"),
                       (self.reset_button, "Back to the start (R)"), (self.stop_button, "Stop the run (Esc)")):
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setMinimumWidth(90)
        for b in self.target_picker.buttons:
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.run_label = QLabel("")
        controls = QHBoxLayout()
        for b in (self.play_button, self.step_button, self.reset_button, self.stop_button):
            controls.addWidget(b)
        controls.addSpacing(12)
        controls.addWidget(self.run_label, 1)

        self.timeline = QSlider(Qt.Orientation.Horizontal)
        self.timeline.setRange(0, 0)
        self.timeline.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.timeline.setToolTip("Scrub through the steps of the run")
        self.timeline_label = QLabel("step 0")
        self.timeline_label.setMinimumWidth(110)
        timeline = QHBoxLayout()
        timeline.addWidget(QLabel("Timeline"))
        timeline.addWidget(self.timeline, 1)
        timeline.addWidget(self.timeline_label)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(4, 6, 6, 6)
        right_layout.addLayout(controls)
        right_layout.addWidget(self.view, 1)
        right_layout.addLayout(timeline)

        self.gallery_tab = GalleryTab(self._gallery_models, self.settings.config)
        self.tabs = QTabWidget()
        self.tabs.addTab(right, "Traversal")
        self.tabs.addTab(self.gallery_tab, "Gallery (10×10)")

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.play_button.clicked.connect(self.toggle_play)
        self.step_button.clicked.connect(self.step_once)
        self.reset_button.clicked.connect(self.reset)
        self.stop_button.clicked.connect(self.stop)

    def _build_actions(self) -> None:
        file_menu = self.menuBar().addMenu("&File")

        def action(text: str, slot, shortcut=None, menu=None) -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            (menu or self).addAction(a)
            if menu is not None:
                self.addAction(a)
            return a

        self.add_model_action = action("Add model…", self._ask_add_model, "Ctrl+M", file_menu)
        self.open_run_action = action("Open run…", self._ask_open_run, QKeySequence.StandardKey.Open, file_menu)
        self.export_action = action("Export…", self._ask_export, "Ctrl+E", file_menu)
        file_menu.addSeparator()
        action("Quit", self.close, QKeySequence.StandardKey.Quit, file_menu)

        run_menu = self.menuBar().addMenu("&Run")
        self.play_action = action("Play / pause", self.toggle_play, Qt.Key.Key_Space, run_menu)
        self.step_action = action("Step", self.step_once, Qt.Key.Key_Right, run_menu)
        self.reset_action = action("Reset to start", self.reset, Qt.Key.Key_R, run_menu)
        self.stop_action = action("Stop", self.stop, Qt.Key.Key_Escape, run_menu)
        self.target_actions = [
            action(f"Target {c}", lambda _=False, c=c: self.set_target(c), str(c)) for c in range(10)]

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_step = QLabel("step –")
        self.status_speed = QLabel("– steps/s")
        name = "CPU"
        if self.device.startswith("cuda"):
            name = f"CUDA ({torch.cuda.get_device_name(torch.device(self.device))})"
        self.status_device = QLabel(f"device: {name}")
        self.export_progress = QProgressBar()
        self.export_progress.setMaximumWidth(220)
        self.export_progress.setVisible(False)
        self.export_cancel = QToolButton()
        self.export_cancel.setText("Cancel export")
        self.export_cancel.setVisible(False)
        self.export_cancel.clicked.connect(self.cancel_export)
        for w in (self.status_step, self.status_speed, self.status_device):
            w.setMinimumWidth(120)
            bar.addPermanentWidget(w)
        bar.addPermanentWidget(self.export_progress)
        bar.addPermanentWidget(self.export_cancel)

    # ------------------------------------------------------------------ models

    def _populate_models(self) -> None:
        try:
            cards = list_models(self.models_folder)
        except OSError:
            cards = []
        names = [c["name"] for c in cards]
        default = [n for n in DEFAULT_MODELS if n in names] or names[:2]
        for card in cards:
            self.selector.add_card(card, checked=card["name"] in default)

    def _model(self, card: dict) -> nn.Module:
        path = card["path"]
        if path not in self._loaded:
            self._loaded[path] = load_model(path, device=self.device)
        return self._loaded[path]

    def _sha256(self, card: dict) -> str:
        path = card["path"]
        if path not in self._sha:
            self._sha[path] = card.get("sha256") or sha256_of(path)
        return self._sha[path]

    def _selected_models(self) -> tuple[list[dict], list[nn.Module]] | None:
        """The ticked cards and their loaded models; None (after an error dialog) on failure."""
        cards = self.selector.selected_cards()
        if not cards:
            self.show_error("No model", "No model is available. Add one with File → Add model…")
            return None
        try:
            return cards, [self._model(c) for c in cards]
        except ModelLoadError as exc:
            self.show_error("Cannot load model", str(exc))
            return None

    def _gallery_models(self) -> tuple[list[nn.Module], list[str]] | None:
        chosen = self._selected_models()
        return None if chosen is None else (chosen[1], [c["name"] for c in chosen[0]])

    def add_model_file(self, path: str | Path) -> bool:
        """Load a ``.safetensors`` file, list it and tick it if there is room; False on error."""
        path = Path(path)
        try:
            model = load_model(path, device=self.device)
        except ModelLoadError as exc:
            self.show_error("Cannot add model", str(exc))
            return False
        card = read_card(path) or {"kind": "user", "evaluation": {}}
        card = {**card, "name": path.stem, "path": str(path)}
        self._loaded[str(path)] = model
        room = len(self.selector.selected_cards()) < MAX_MODELS
        self.selector.add_card(card, checked=False)
        if room:
            paths = [c["path"] for c in self.selector.selected_cards()] + [str(path)]
            self.selector.set_selected(paths)
        self.statusBar().showMessage(f"added model {path.name}", 5000)
        return True

    def _ask_add_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add model", str(self.models_folder),
                                              "safetensors weights (*.safetensors);;All files (*)")
        if path:
            self.add_model_file(path)

    # ------------------------------------------------------------------ errors

    def show_error(self, title: str, message: str) -> None:
        """A window-modal message box that does not block the event loop."""
        if self.error_dialog is not None:
            self.error_dialog.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.error_dialog = box
        self.last_error = message
        box.open()
        self.error_shown.emit(message)

    # ------------------------------------------------------------------ start, target, selection

    def _on_start_changed(self) -> None:
        self._leave_run("the start image changed")
        self._update_start_predictions()

    def _on_target_changed(self, target: int) -> None:
        self._leave_run("the target changed")
        self._show_start()

    def set_target(self, target: int) -> None:
        """Choose the target class (as the buttons and keys 0–9 do)."""
        if target == self.target_picker.target and self.history is None:
            return
        self.target_picker.set_target(target)
        self._on_target_changed(target)

    def _on_selection_changed(self) -> None:
        self._leave_run("the models changed")
        cards = self.selector.selected_cards()
        if not cards:
            self.view.show_message(
                "<b>No models found.</b><br><br>"
                f"The models folder {self.models_folder} holds no <code>.safetensors</code> "
                "file with a card.<br>Train the shipped ones (see README), or use "
                "<b>File → Add model…</b> to open a <code>.safetensors</code> file.")
            self._update_controls()
            self.input_panel.set_predictions_html("")
            return
        self.view.set_models([c["name"] for c in cards], [describe_card(c) for c in cards])
        self._update_start_predictions()

    def _on_settings_changed(self) -> None:
        self._replay_config = None

    def _on_speed_changed(self, steps_per_second: float) -> None:
        if self._run is not None:
            self._run.worker.set_steps_per_second(steps_per_second or None)

    def _update_start_predictions(self) -> None:
        """Classify the start image with every ticked model; mark the predicted class."""
        self._start_probs = {}
        image = self.input_panel.start_image
        cards = self.selector.selected_cards()
        if image is None or not cards:
            self.input_panel.set_predictions_html("")
            self.target_picker.mark_predicted({})
            self._show_start()
            return
        lines = []
        for card in cards:
            try:
                model = self._model(card)
            except ModelLoadError as exc:
                lines.append(f"{card['name']}: <span style='color:#e57373'>cannot load ({exc})</span>")
                continue
            with torch.no_grad():
                x = torch.as_tensor(image, device=self.device)[None, None]
                logits = model(x)
            probs = torch.softmax(logits, -1)[0].cpu().numpy()
            if not np.isfinite(probs).all():
                lines.append(f"{card['name']}: <span style='color:#e57373'>NaN or inf output</span>")
                continue
            self._start_probs[card["name"]] = probs
            c = int(probs.argmax())
            lines.append(f"{card['name']}: <b>{c}</b> ({100 * probs[c]:.1f}%)")
        self.input_panel.set_predictions_html("Models predict: " + " · ".join(lines))
        self.target_picker.mark_predicted({n: int(p.argmax()) for n, p in self._start_probs.items()})
        self._show_start()

    def _show_start(self) -> None:
        """The columns before any run: the start image and its prediction, empty curves."""
        if self.history is not None:
            return
        image = self.input_panel.start_image
        shown = image if image is not None else np.zeros((28, 28), np.float32)
        for column in self.view.columns:
            column.target = self.target_picker.target
            column.show_start(shown, self._start_probs.get(column.name))
        self._update_controls()

    # ------------------------------------------------------------------ run control

    @property
    def run_status(self) -> str:
        """``idle``, ``playing``, ``paused``, ``completed``, ``stopped`` or ``failed``."""
        return self._run_status

    @property
    def worker_running(self) -> bool:
        return self._run is not None

    def toggle_play(self) -> None:
        """Space: play, pause, resume; after the end of a run, play it again from the start."""
        if self._run is not None:
            if self._run.worker.is_paused:
                self._run.worker.resume()
                self._set_status("playing")
            else:
                self._run.worker.pause()
                self._set_status("paused")
            return
        self.play()

    def play(self) -> bool:
        """Start a new run from the start image, playing; False (with a dialog) on bad input."""
        if self._run is not None:
            self._run.worker.resume()
            self._set_status("playing")
            return True
        return self._start_run(paused=False)

    def pause(self) -> None:
        if self._run is not None:
            self._run.worker.pause()
            self._set_status("paused")

    def step_once(self) -> None:
        """Right arrow: one step (pausing a playing run); starts a paused run if none is on."""
        if self._run is None:
            if not self._start_run(paused=True):
                return
        self._run.worker.step_once()
        self._set_status("paused")

    def stop(self) -> None:
        """Stop the run; its frames so far stay on screen to scrub and export."""
        if self._run is None:
            return
        self._finish_run("stopped")

    def reset(self) -> None:
        """R: stop any run and go back to the start image with empty curves."""
        self._leave_run("reset")

    def _start_run(self, paused: bool) -> bool:
        image = self.input_panel.start_image
        if image is None:
            self.show_error("No start image", self.input_panel.error or "draw a digit or pick one first")
            return False
        selected = self._selected_models()
        if selected is None:
            return False
        cards, models = selected
        try:
            config = self._replay_config or self.settings.config()
        except ValueError as exc:
            self.show_error("Invalid settings", str(exc))
            return False
        self._leave_run("a new run")
        target = self.target_picker.target
        self._run_counter += 1
        run_id = self._run_counter
        worker = TraversalWorker(run_id, models, image, target, config, paused=paused,
                                 steps_per_second=self.settings.steps_per_second)
        run = TraversalRun(worker, self)
        run.frame_ready.connect(self._on_worker_frame_ready)
        run.run_failed.connect(self._on_worker_run_failed)
        run.run_finished.connect(self._on_worker_run_finished)
        run.thread_finished.connect(self._on_run_thread_finished)
        self._runs[run_id] = run
        self._run = run
        self.history = RunHistory(len(models), target, capacity=config.steps + 1)
        self._run_info = {
            "run_id": run_id, "cards": cards, "image": np.array(image, np.float32),
            "mnist_index": self.input_panel.mnist_index, "target": target, "config": config,
        }
        self._display_index = None
        self._rate.clear()
        self._steps_per_second = 0.0
        max_steps = config.steps
        delta_level = min(1.0, config.eps) if (config.eps is not None and config.norm == "linf") else 1.0
        for column in self.view.columns:
            column.begin_run(target, int(self._start_probs[column.name].argmax())
                             if column.name in self._start_probs else -1,
                             max_steps, config.eps, config.norm, delta_level)
        with QSignalBlocker(self.timeline):
            self.timeline.setRange(0, 0)
        self._set_status("paused" if paused else "playing")
        if self._start_probs and all(int(p.argmax()) == target for p in self._start_probs.values()):
            # Allowed on purpose: climbing the class it already has shows what the model
            # thinks makes a digit more of that digit.
            self.statusBar().showMessage(
                f"the models already predict {target}: this run makes the digit more of a {target}; "
                "pick another target to watch it change class", 10_000)
        run.start()
        self._redraw_timer.start()
        self.run_started.emit(run_id)
        return True

    def _leave_run(self, why: str) -> None:
        """Stop the current run (if any) and clear its history: back to the start image."""
        if self._run is not None:
            self._finish_run("stopped")
        if self.history is not None:
            self.history = None
            self._run_info = None
            self._display_index = None
            with QSignalBlocker(self.timeline):
                self.timeline.setRange(0, 0)
            self.timeline_label.setText("step 0")
        self._set_status("idle")
        self._show_start()

    def _finish_run(self, reason: str) -> None:
        """The run on screen ends: stop its worker (its thread ends within a step)."""
        run = self._run
        self._run = None
        if run is not None:
            run.stop()
        self._redraw(force=True)
        self._redraw_timer.stop()
        self._set_status(reason)
        self.run_finished.emit(reason)

    def _set_status(self, status: str) -> None:
        self._run_status = status
        self._update_controls()

    def _update_controls(self) -> None:
        has_models = bool(self.selector.selected_cards())
        playing = self._run is not None and self._run_status == "playing"
        self.play_button.setText("❚❚ Pause" if playing else "▶ Play")
        for w in (self.play_button, self.step_button, self.play_action, self.step_action):
            w.setEnabled(has_models)
        self.stop_button.setEnabled(self._run is not None)
        self.export_action.setEnabled(self.history is not None and len(self.history) > 0)
        text = {"idle": "ready", "playing": "running", "paused": "paused", "completed": "finished",
                "stopped": "stopped", "failed": "failed"}[self._run_status]
        self.run_label.setText(f"<b>{text}</b>")

    # ------------------------------------------------------------------ worker signals

    @Slot(int, object)
    def _on_worker_frame_ready(self, run_id: int, frames: list) -> None:
        if self._run is None or run_id != self._run.run_id or self.history is None:
            return  # a run we already left
        for frame in frames:
            self.history.append(frame)
        self._rate.append((time.perf_counter(), len(frames)))
        self._dirty = True

    @Slot(int, str)
    def _on_worker_run_failed(self, run_id: int, message: str) -> None:
        if self._run is None or run_id != self._run.run_id:
            return
        self.show_error("The run stopped", message)

    @Slot(int, str)
    def _on_worker_run_finished(self, run_id: int, reason: str) -> None:
        if self._run is None or run_id != self._run.run_id:
            return
        self._finish_run(reason)

    @Slot(int)
    def _on_run_thread_finished(self, run_id: int) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.deleteLater()

    # ------------------------------------------------------------------ drawing

    def _measure_rate(self) -> None:
        now = time.perf_counter()
        recent = [(t, n) for t, n in self._rate if now - t <= 1.0]
        if len(recent) >= 2:
            span = recent[-1][0] - recent[0][0]
            if span > 0:
                self._steps_per_second = sum(n for _, n in recent[1:]) / span

    def _redraw(self, force: bool = False) -> None:
        if not (self._dirty or force) or self.history is None or len(self.history) == 0:
            return
        started = time.perf_counter()
        self._dirty = False
        h = self.history
        n = len(h)
        steps = h.steps
        flips = h.flip_steps()
        start_classes = h.start_classes()
        for j, column in enumerate(self.view.columns[: h.n_models]):
            if column.start_class != start_classes[j]:
                column.begin_run(h.target, start_classes[j], self._run_info["config"].steps,
                                 self._run_info["config"].eps, self._run_info["config"].norm,
                                 column._delta_level)
            column.set_curves(steps, h.probs[:, j], h.l2[:, j], h.linf[:, j])
            column.set_flip(flips[j])
        with QSignalBlocker(self.timeline):
            self.timeline.setRange(0, n - 1)
            if self._display_index is None:
                self.timeline.setValue(n - 1)
        self._show_index(self.timeline.value())
        self._measure_rate()
        total = self._run_info["config"].steps if self._run_info else n - 1
        self.status_step.setText(f"step {int(steps[-1])} / {total}")
        self.status_speed.setText(f"{self._steps_per_second:.0f} steps/s")
        self._update_controls()
        cost_ms = 1000 * (time.perf_counter() - started + self.view.graphics.last_paint_s)
        interval = min(MAX_REDRAW_INTERVAL_MS, max(REDRAW_INTERVAL_MS, cost_ms / REDRAW_TIME_SHARE))
        self._redraw_timer.setInterval(int(interval))

    def _show_index(self, index: int) -> None:
        h = self.history
        if h is None or not 0 <= index < len(h):
            return
        x0 = self._run_info["image"]
        for j, column in enumerate(self.view.columns[: h.n_models]):
            image = h.images[index, j]
            column.show_step(int(h.steps[index]), image, image - x0, h.probs[index, j])
        self.timeline_label.setText(f"step {int(h.steps[index])} / {int(h.steps[-1])}")

    def _on_timeline_moved(self, value: int) -> None:
        if self.history is None:
            return
        last = len(self.history) - 1
        self._display_index = None if value >= last else value
        self._show_index(value)

    def scrub_to(self, step_index: int) -> None:
        """Show frame ``step_index`` in every view (as dragging the timeline does)."""
        self.timeline.setValue(step_index)

    @property
    def displayed_index(self) -> int:
        """The frame index on screen (the timeline's position)."""
        return self.timeline.value()

    # ------------------------------------------------------------------ export and replay

    def current_record(self) -> dict:
        """The run record of the run on screen (raises RuntimeError if there is none)."""
        if self._run_info is None or self.history is None or len(self.history) == 0:
            raise RuntimeError("there is no run to export: press Play first")
        info = self._run_info
        refs = [ModelRef(c["name"], self._sha256(c), c["path"]) for c in info["cards"]]
        flips = self.history.flip_steps()
        extra = {
            "device": self.device,
            "steps_taken": int(self.history.steps[-1]),
            "status": self._run_status,
            "flip_step": {c["name"]: f for c, f in zip(info["cards"], flips)},
        }
        return build_run_record(refs, info["image"], info["target"], info["config"],
                                mnist_index=info["mnist_index"], extra=extra)

    def export_to(self, folder: str | Path) -> bool:
        """Export the run on screen into ``folder`` in the background; False if not started."""
        if self._export is not None:
            self.show_error("Export busy", "An export is already running.")
            return False
        try:
            record = self.current_record()
        except RuntimeError as exc:
            self.show_error("Nothing to export", str(exc))
            return False
        names = [c["name"] for c in self._run_info["cards"]]
        job = ExportJob(folder, record, self.history.stacked(), names, self)
        job.progress.connect(self._on_export_progress)
        job.export_finished.connect(self._on_export_finished)
        job.export_failed.connect(self._on_export_failed)
        job.thread_finished.connect(self._on_export_thread_finished)
        self._export = job
        self.export_progress.setRange(0, 0)
        self.export_progress.setVisible(True)
        self.export_cancel.setVisible(True)
        job.start()
        self.statusBar().showMessage(f"exporting to {folder}…")
        return True

    def cancel_export(self) -> None:
        if self._export is not None:
            self._export.cancel()

    def _ask_export(self) -> None:
        if self.history is None or len(self.history) == 0:
            self.show_error("Nothing to export", "There is no run to export: press Play first.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the run into folder")
        if folder:
            self.export_to(folder)

    def _on_export_progress(self, done: int, total: int, what: str) -> None:
        self.export_progress.setRange(0, total)
        self.export_progress.setValue(done)
        self.export_progress.setFormat(f"export %p% ({what})")

    def _on_export_finished(self, folder: str) -> None:
        self.statusBar().showMessage(f"exported the run to {folder}", 8000)
        self.export_finished.emit(folder)

    def _on_export_failed(self, message: str) -> None:
        self.show_error("Export failed", message)
        self.export_failed.emit(message)

    def _on_export_thread_finished(self) -> None:
        job, self._export = self._export, None
        self.export_progress.setVisible(False)
        self.export_cancel.setVisible(False)
        if job is not None:
            job.thread.wait()  # "finished" is emitted just before the thread really ends
            job.deleteLater()
        if self._close_after_export:
            self._close_after_export = False
            self.close()

    def open_run_file(self, path: str | Path, play: bool = True) -> bool:
        """Load a run record and replay the identical run; False (with a dialog) on error."""
        try:
            record = read_run_record(path)
        except RunRecordError as exc:
            self.show_error("Cannot open run", str(exc))
            return False
        by_sha: dict[str, dict] = {}
        for card in self.selector.cards():
            try:
                by_sha.setdefault(self._sha256(card), card)
            except OSError:
                continue
        missing = [m for m in record.models if m.sha256 not in by_sha]
        if missing:
            names = ", ".join(f"{m.name} (sha256 {m.sha256[:12]}…)" for m in missing)
            self.show_error("Models not available",
                            f"This run used {names}, which is not among the listed models. "
                            "Add the same weights with File → Add model… and open the run again.")
            return False
        if len(record.models) > MAX_MODELS:
            self.show_error("Cannot open run", f"the run compares {len(record.models)} models; "
                                               f"the window shows at most {MAX_MODELS}")
            return False
        if len({m.sha256 for m in record.models}) < len(record.models):
            self.show_error("Cannot open run", "the run compares a model with itself; the window "
                                               "shows each model once (replay it with trav-gui traverse)")
            return False
        if record.config.steps > MAX_UI_STEPS:
            # Checked before leaving the run on screen: a refused file changes nothing.
            self.show_error("Cannot open run", f"{record.config.steps} steps: the window keeps at "
                                               f"most {MAX_UI_STEPS} (replay it with trav-gui traverse)")
            return False
        self._leave_run("a run was opened")
        exact = self.settings.set_config(record.config)
        self._replay_config = None if exact else record.config
        self.selector.set_selected([by_sha[m.sha256]["path"] for m in record.models])
        self.target_picker.set_target(record.target)
        self.input_panel.set_start_image(record.start_image, record.mnist_index)
        self.statusBar().showMessage(f"opened run {Path(path)} (made {record.created})", 8000)
        return self.play() if play else True

    def _ask_open_run(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run record", "",
                                              "run records (run.json *.json);;All files (*)")
        if path:
            self.open_run_file(path)

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop every worker and wait for its thread: no thread outlives the window.

        During an export the window stays open until the export has finished (or is
        cancelled with its button), then closes: closing never loses an export.
        """
        if self._export is not None:
            self._close_after_export = True
            self.statusBar().showMessage("closing once the export has finished "
                                         "(Cancel export to close now)…")
            event.ignore()
            return
        self._redraw_timer.stop()
        self._run = None
        for run in list(self._runs.values()):
            run.wait()
        self._runs.clear()
        if self._export is not None:
            self._export.wait()
            self._export = None
        self.gallery_tab.shutdown()
        super().closeEvent(event)
