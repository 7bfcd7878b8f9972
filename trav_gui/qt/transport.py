"""The transport bar (play, step, reset, stop and the run's state) and the timeline under the columns."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

__all__ = ["Timeline", "Transport"]

STATUS_TEXT = {"idle": "ready", "playing": "running", "paused": "paused", "completed": "finished",
               "stopped": "stopped", "failed": "failed"}


class Transport(QWidget):
    """Play / pause, one step, reset and stop buttons, and the run's state in words."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.play_button = QPushButton("▶ Play")
        self.step_button = QPushButton("Step ▸|")
        self.reset_button = QPushButton("⟲ Reset")
        self.stop_button = QPushButton("■ Stop")
        self.run_label = QLabel("")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for b, tip in ((self.play_button, "Play / pause (Space)"), (self.step_button, "One step (Right arrow)"),
                       (self.reset_button, "Back to the start (R)"), (self.stop_button, "Stop the run (Esc)")):
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space and arrows belong to the window
            b.setMinimumWidth(90)
            layout.addWidget(b)
        layout.addSpacing(12)
        layout.addWidget(self.run_label, 1)

    def show_state(self, status: str, playing: bool, can_play: bool, can_stop: bool) -> None:
        self.play_button.setText("❚❚ Pause" if playing else "▶ Play")
        self.play_button.setEnabled(can_play)
        self.step_button.setEnabled(can_play)
        self.stop_button.setEnabled(can_stop)
        self.run_label.setText(f"<b>{STATUS_TEXT[status]}</b>")


class Timeline(QWidget):
    """A slider over the steps of the run on screen, with the step shown beside it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Scrub through the steps of the run")
        self.label = QLabel("step 0")
        self.label.setMinimumWidth(110)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Timeline"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
