"""RunDisplay without a window: a fake view and a fake controller holding a real RunHistory."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QStatusBar

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.runs.context import RunContext
from trav_gui.engine.runs.history import RunHistory
from trav_gui.qt.run_display import (
    MAX_REDRAW_INTERVAL_MS,
    REDRAW_INTERVAL_MS,
    REDRAW_TIME_SHARE,
    REDRAW_TIME_SHARE_LIMITED,
    RunDisplay,
)
from trav_gui.qt.transport import Timeline

X0 = np.full((28, 28), 0.5, np.float32)
CONFIG = TraversalConfig(steps=9, step_size=0.1)


class FakeView:
    """Records what it is asked to draw; ``graphics.last_paint_s`` is the last paint's cost."""

    def __init__(self) -> None:
        self.curves: list[int] = []  # len(history) at each draw_curves
        self.frames: list[int] = []  # the index of each show_frame
        self.graphics = SimpleNamespace(last_paint_s=0.0)

    def draw_curves(self, history, config) -> None:
        self.curves.append(len(history))

    def show_frame(self, history, index, image) -> None:
        self.frames.append(index)


class FakeRuns(QObject):
    """What RunDisplay reads of a RunController."""

    frames_added = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.history = RunHistory(1, 3, capacity=4)
        self.context = RunContext(({"name": "m"},), X0, None, 3, CONFIG, run_id=1)
        self.speed_limit = None

    def steps_per_second(self):
        return 123.0

    def add(self, frames) -> None:
        for f in frames:
            self.history.append(f)
        self.frames_added.emit()


@pytest.fixture(scope="module")
def frames():
    from conftest import LinearModel

    return list(traverse([LinearModel(seed=0).eval()], X0, 3, CONFIG))


@pytest.fixture
def shown(qtbot):
    runs, view, timeline, bar = FakeRuns(), FakeView(), Timeline(), QStatusBar()
    qtbot.addWidget(timeline)
    qtbot.addWidget(bar)
    display = RunDisplay(runs, view, timeline, bar)
    yield runs, view, timeline.slider, display
    display.timer.stop()


def test_redraws_only_after_new_frames_or_when_forced(shown, frames):
    runs, view, slider, display = shown
    display.redraw()
    assert view.curves == []  # nothing new
    runs.add(frames[:3])
    display.redraw()
    assert view.curves == [3] and view.frames == [2]
    assert (slider.maximum(), slider.value()) == (2, 2)
    assert display.step_label.text() == "step 2 / 9" and display.speed_label.text() == "123 steps/s"
    display.redraw()
    assert view.curves == [3]  # not dirty any more
    display.redraw(force=True)
    assert view.curves == [3, 3]


def test_frames_arriving_fast_are_drawn_once_per_timer_tick(qtbot, shown, frames):
    runs, view, _, display = shown
    display.start()
    for f in frames:
        runs.add([f])
    assert view.curves == []  # arriving frames never draw by themselves
    qtbot.waitUntil(lambda: bool(view.curves), timeout=2000)
    qtbot.wait(3 * REDRAW_INTERVAL_MS)  # more ticks, no new frames
    assert view.curves == [len(frames)]


def test_the_newest_frame_is_followed_until_the_user_scrubs_back(shown, frames):
    runs, view, slider, display = shown
    runs.add(frames[:4])
    display.redraw()
    slider.setValue(1)  # the user scrubs back
    assert view.frames[-1] == 1 and display.timeline.label.text() == "step 1 / 3"
    runs.add(frames[4:7])
    display.redraw()
    assert (slider.maximum(), slider.value()) == (6, 1) and view.frames[-1] == 1
    slider.setValue(6)  # back at the end: follow again
    runs.add(frames[7:])
    display.redraw()
    assert slider.value() == slider.maximum() == len(frames) - 1 and view.frames[-1] == len(frames) - 1


def test_slow_painting_stretches_the_redraw_interval_within_the_budget(shown, frames):
    runs, view, _, display = shown
    runs.add(frames)

    def interval_after_paint(seconds: float) -> int:
        view.graphics.last_paint_s = seconds
        display.redraw(force=True)
        return display.timer.interval()

    assert interval_after_paint(0.0) == REDRAW_INTERVAL_MS
    slow = interval_after_paint(0.010)  # a 10 ms paint may take at most the set share of the time
    assert int(10 / REDRAW_TIME_SHARE) <= slow < MAX_REDRAW_INTERVAL_MS
    runs.speed_limit = 50  # the worker mostly waits: the same paint allows more redraws
    limited = interval_after_paint(0.010)
    assert int(10 / REDRAW_TIME_SHARE_LIMITED) <= limited < slow
    runs.speed_limit = None
    assert interval_after_paint(10.0) == MAX_REDRAW_INTERVAL_MS


def test_stop_draws_the_last_frames_and_clear_empties_the_timeline(shown, frames):
    runs, view, slider, display = shown
    display.start()
    assert display.timer.isActive()
    runs.add(frames)
    display.stop()
    assert not display.timer.isActive() and view.curves == [len(frames)]
    display.clear()
    assert slider.maximum() == 0 and display.timeline.label.text() == "step 0"
