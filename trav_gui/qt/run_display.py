"""Drawing the run on screen: the columns, the timeline and the step counter, at a bounded rate.

Frames arrive far faster than a screen needs them. :class:`RunDisplay` marks the picture
dirty when the :class:`~trav_gui.qt.run_controller.RunController` has new frames and
repaints from its history on a timer, about 30 times a second, less often when painting
is expensive, so drawing never takes more than a fixed share of the time.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QSignalBlocker, QTimer
from PySide6.QtWidgets import QLabel, QStatusBar

from trav_gui.qt.plots import ComparisonView
from trav_gui.qt.run_controller import RunController
from trav_gui.qt.transport import Timeline

__all__ = ["MAX_REDRAW_INTERVAL_MS", "REDRAW_INTERVAL_MS", "REDRAW_TIME_SHARE", "RunDisplay"]

REDRAW_INTERVAL_MS = 33  # about 30 Hz at most, however fast frames arrive
# At full speed drawing competes with the traversal for the GIL: every millisecond the GUI
# thread spends in pyqtgraph's Python is one the worker waits for between torch calls. The
# interval between redraws grows so that a redraw (setting the data plus painting) takes
# at most this share of the time, up to MAX_REDRAW_INTERVAL_MS. Measured on 2 cores with
# benchmarks/bench_app.py (app steps/s / engine steps/s): share 0.2 -> 0.74, 0.1 -> 0.77,
# 0.07 -> 0.84 (about 6 redraws a second at full speed).
REDRAW_TIME_SHARE = 0.07
# With a speed limit the worker mostly waits, so drawing costs it nothing: redraw more often.
REDRAW_TIME_SHARE_LIMITED = 0.25
MAX_REDRAW_INTERVAL_MS = 250


class RunDisplay(QObject):
    """Draws ``runs``' history into ``view`` and ``timeline``, with the step and speed in ``status_bar``."""

    def __init__(self, runs: RunController, view: ComparisonView, timeline: Timeline,
                 status_bar: QStatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runs, self.view, self.timeline = runs, view, timeline
        self.step_label, self.speed_label = QLabel("step –"), QLabel("– steps/s")
        for label in (self.step_label, self.speed_label):
            label.setMinimumWidth(120)
            status_bar.addPermanentWidget(label)
        self._follow = True  # show the newest frame (False once the user scrubs back)
        self._dirty = False
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_INTERVAL_MS)
        self.timer.timeout.connect(self.redraw)
        runs.frames_added.connect(self._mark_dirty)
        timeline.slider.valueChanged.connect(self._on_timeline_moved)

    def start(self) -> None:
        """A run begins: follow its newest frame and redraw on the timer."""
        self._follow = True
        self.timer.start()

    def stop(self) -> None:
        """The run ended: draw its last frames once more and stop the timer."""
        self.redraw(force=True)
        self.timer.stop()

    def clear(self) -> None:
        """No run on screen: an empty timeline at step 0."""
        self._follow = True
        with QSignalBlocker(self.timeline.slider):
            self.timeline.slider.setRange(0, 0)
        self.timeline.label.setText("step 0")

    def _mark_dirty(self) -> None:
        self._dirty = True

    def redraw(self, force: bool = False) -> None:
        h, context = self.runs.history, self.runs.context
        if not (self._dirty or force) or h is None or len(h) == 0 or context is None:
            return
        started = time.perf_counter()
        self._dirty = False
        slider = self.timeline.slider
        self.view.draw_curves(h, context.config)
        with QSignalBlocker(slider):
            slider.setRange(0, len(h) - 1)
            if self._follow:
                slider.setValue(len(h) - 1)
        self.show_index(slider.value())
        self.step_label.setText(f"step {int(h.steps[-1])} / {context.config.steps}")
        rate = self.runs.steps_per_second()
        if rate is not None:
            self.speed_label.setText(f"{rate:.0f} steps/s")
        cost_ms = 1000 * (time.perf_counter() - started + self.view.graphics.last_paint_s)
        share = REDRAW_TIME_SHARE_LIMITED if self.runs.speed_limit else REDRAW_TIME_SHARE
        interval = min(MAX_REDRAW_INTERVAL_MS, max(REDRAW_INTERVAL_MS, cost_ms / share))
        self.timer.setInterval(int(interval))

    def show_index(self, index: int) -> None:
        """Show frame ``index`` of the run on screen in every column."""
        h, context = self.runs.history, self.runs.context
        if h is None or context is None or not 0 <= index < len(h):
            return
        self.view.show_frame(h, index, context.image)
        self.timeline.label.setText(f"step {int(h.steps[index])} / {int(h.steps[-1])}")

    def _on_timeline_moved(self, value: int) -> None:
        h = self.runs.history
        if h is None:
            return
        self._follow = value >= len(h) - 1
        self.show_index(value)
