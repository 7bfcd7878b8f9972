"""The RunController without a window: a fake worker it drives, whose signals the test sends."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal, Slot

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.runs.context import RunContext
from trav_gui.qt.run_controller import RunController

X0 = np.full((28, 28), 0.5, np.float32)
CONFIG = TraversalConfig(steps=4, step_size=0.1)


class FakeWorker(QObject):
    """Built like a TraversalWorker; records the controls it gets and runs until stopped.

    The test emits its signals from the GUI thread, so they reach the controller at once.
    """

    frame_ready = Signal(int, object)
    realism_ready = Signal(int, object, object)
    run_failed = Signal(int, str)
    run_finished = Signal(int, str)

    def __init__(self, run_id, models, image, target, config, paused=False, steps_per_second=None,
                 scorer=None, entries=None) -> None:
        super().__init__()
        self.run_id = run_id
        self.calls: list = []
        self.is_paused = paused
        self.steps_per_second = steps_per_second
        self._stop = threading.Event()

    def pause(self) -> None:
        self.calls.append("pause")
        self.is_paused = True

    def resume(self) -> None:
        self.calls.append("resume")
        self.is_paused = False

    def step_once(self) -> None:
        self.calls.append("step_once")
        self.is_paused = True

    def set_steps_per_second(self, steps_per_second) -> None:
        self.calls.append(("speed", steps_per_second))

    def stop(self) -> None:
        self.calls.append("stop")
        self._stop.set()

    @Slot()
    def run(self) -> None:
        self._stop.wait(30)
        self.run_finished.emit(self.run_id, "stopped")


@pytest.fixture
def workers():
    return []


@pytest.fixture
def controller(qtbot, workers):
    def factory(*args, **kw):
        workers.append(FakeWorker(*args, **kw))
        return workers[-1]

    runs = RunController(worker_factory=factory)
    yield runs
    runs.shutdown()


@pytest.fixture(scope="module")
def frames():
    """Four real frames of a one-model run (steps 0..3)."""
    from conftest import LinearModel

    return list(traverse([LinearModel(seed=0).eval()], X0, 3, TraversalConfig(steps=3, step_size=0.1)))


def context() -> RunContext:
    return RunContext(({"name": "m", "path": "/m.safetensors"},), X0, None, 3, CONFIG)


def test_play_pause_step_speed_and_stop_reach_the_worker_and_set_the_state(qtbot, controller, workers):
    states = []
    controller.status_changed.connect(states.append)
    with qtbot.waitSignal(controller.started) as started:
        ctx = controller.start(context(), [object()], steps_per_second=None)
    worker = workers[0]
    assert started.args == [1] and ctx.run_id == 1 and worker.run_id == 1
    assert controller.status == "playing" and controller.running and not controller.paused
    controller.pause()
    assert controller.status == "paused" and controller.paused and worker.calls[-1] == "pause"
    controller.toggle()
    assert controller.status == "playing" and worker.calls[-1] == "resume"
    controller.step_once()
    assert controller.status == "paused" and worker.calls[-1] == "step_once"
    controller.set_speed(20)
    assert controller.speed_limit == 20 and worker.calls[-1] == ("speed", 20)
    controller.set_speed(0)  # 0 means as fast as possible
    assert controller.speed_limit is None and worker.calls[-1] == ("speed", None)
    with qtbot.waitSignal(controller.finished) as finished:
        controller.stop()
    assert finished.args == ["stopped"] and worker.calls[-1] == "stop"
    assert controller.status == "stopped" and not controller.running
    assert controller.history is not None and controller.context is ctx  # the frames stay to scrub
    assert states == ["idle", "playing", "paused", "playing", "paused", "stopped"]  # start leaves first
    qtbot.waitUntil(lambda: not controller.threads(), timeout=5000)


def test_a_run_started_paused_is_paused_and_controls_without_a_run_do_nothing(qtbot, controller, workers):
    controller.pause()
    controller.step_once()
    controller.stop()
    assert controller.status == "idle" and not workers
    controller.start(context(), [object()], paused=True, steps_per_second=5)
    assert controller.status == "paused" and controller.paused and controller.speed_limit == 5
    assert workers[0].steps_per_second == 5


def test_frames_of_the_run_on_screen_are_added_in_order(qtbot, controller, workers, frames):
    controller.start(context(), [object()])
    worker = workers[0]
    with qtbot.waitSignal(controller.frames_added):
        worker.frame_ready.emit(1, frames[:2])
    worker.frame_ready.emit(1, frames[2:])
    assert len(controller.history) == 4 and list(controller.history.steps) == [0, 1, 2, 3]
    assert np.array_equal(controller.history.images[3], frames[3].images[:, 0])


def test_frames_and_endings_of_a_run_already_left_are_dropped(qtbot, controller, workers, frames):
    controller.start(context(), [object()])
    old = workers[0]
    old.frame_ready.emit(1, frames[:1])
    ctx = controller.start(context(), [object()])  # leaves run 1
    new = workers[1]
    assert ctx.run_id == 2 == controller.run_id and "stop" in old.calls
    assert len(controller.history) == 0  # run 1's frame went with it
    with qtbot.assertNotEmitted(controller.frames_added), qtbot.assertNotEmitted(controller.failed), \
            qtbot.assertNotEmitted(controller.finished):
        old.frame_ready.emit(1, frames)
        old.run_failed.emit(1, "late failure of run 1")
        old.run_finished.emit(1, "completed")
    assert len(controller.history) == 0 and controller.status == "playing" and controller.running
    new.frame_ready.emit(2, frames[:1])
    assert len(controller.history) == 1


def test_the_worker_ending_its_run_finishes_it_with_its_reason(qtbot, controller, workers, frames):
    controller.start(context(), [object()])
    worker = workers[0]
    worker.frame_ready.emit(1, frames)
    with qtbot.waitSignal(controller.failed) as failed:
        worker.run_failed.emit(1, "NaN at step 4")
    assert failed.args == ["NaN at step 4"]
    with qtbot.waitSignal(controller.finished) as finished:
        worker.run_finished.emit(1, "failed")
    assert finished.args == ["failed"] and controller.status == "failed" and not controller.running
    assert len(controller.history) == 4  # the frames before the failure are kept
    qtbot.waitUntil(lambda: not controller.threads(), timeout=5000)


def test_leave_forgets_the_run_and_goes_back_to_idle(qtbot, controller, workers, frames):
    controller.start(context(), [object()])
    workers[0].frame_ready.emit(1, frames)
    with qtbot.waitSignal(controller.finished):
        controller.leave()
    assert controller.status == "idle" and controller.history is None and controller.context is None
    assert "stop" in workers[0].calls


def test_shutdown_stops_and_waits_for_every_thread(qtbot, controller, workers):
    controller.start(context(), [object()])
    controller.start(context(), [object()])  # run 1 still winding down
    threads = controller.threads()
    assert len(threads) == 2 and all(t.isRunning() for t in threads)
    controller.shutdown()
    assert not any(t.isRunning() for t in threads)
    assert not controller.threads() and not controller.running


def test_a_real_worker_runs_to_completion(qtbot, linear_model):
    runs = RunController()
    with qtbot.waitSignal(runs.finished, timeout=10_000) as finished:
        runs.start(context(), [linear_model])
    assert finished.args == ["completed"] and runs.status == "completed"
    assert list(runs.history.steps) == list(range(CONFIG.steps + 1))
    qtbot.waitUntil(lambda: not runs.threads(), timeout=5000)
