"""The traversal worker in its QThread: frames, pause, single step, stop, speed, NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import in_gui_thread
from torch import nn

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.qt.worker import TraversalWorker
from trav_gui.qt.worker_thread import WorkerThread

X0 = np.full((28, 28), 0.5, np.float32)


def traversal_thread(worker: TraversalWorker) -> WorkerThread:
    return WorkerThread(worker, f"traversal-run-{worker.run_id}", worker.run_finished)


class Collector:
    def __init__(self, run: WorkerThread) -> None:
        worker = run.worker
        self.frames = []
        self.failures = []
        self.reasons = []
        worker.frame_ready.connect(lambda rid, fs: self.frames.extend(fs))
        worker.run_failed.connect(lambda rid, msg: self.failures.append(msg))
        worker.run_finished.connect(lambda rid, why: self.reasons.append(why))

    @property
    def steps(self) -> list[int]:
        return [f.step for f in self.frames]


def _start(qtbot, models, config, **kw):
    run = traversal_thread(TraversalWorker(7, models, X0, 3, config, **kw))
    got = Collector(run)
    run.start()
    return run, got


def _finish(qtbot, run):
    with qtbot.waitSignal(run.thread_finished, timeout=10_000):
        run.stop()


def test_every_frame_arrives_once_in_order_with_the_run_id(qtbot, two_models):
    run = traversal_thread(TraversalWorker(42, two_models, X0, 3, TraversalConfig(steps=50, step_size=0.05)))
    ids, got = [], Collector(run)
    run.worker.frame_ready.connect(lambda rid, fs: ids.append(rid))
    with qtbot.waitSignal(in_gui_thread(run.worker.run_finished, int, str), timeout=10_000) as blocker:
        run.start()
    assert blocker.args == [42, "completed"]
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)
    assert got.steps == list(range(51))
    assert set(ids) == {42}
    # Batched: far fewer emits than frames is allowed, never more.
    assert 1 <= len(ids) <= 51
    assert got.frames[-1].images.shape == (2, 1, 28, 28)


def test_started_paused_gives_frame_zero_then_one_frame_per_step(qtbot, two_models):
    run, got = _start(qtbot, two_models, TraversalConfig(steps=100), paused=True)
    qtbot.waitUntil(lambda: got.steps == [0], timeout=5000)
    for expected in (1, 2, 3):
        with qtbot.waitSignal(in_gui_thread(run.worker.frame_ready, int, object), timeout=5000):
            run.worker.step_once()
        assert got.steps == list(range(expected + 1))
    # Paused: no further frames come without a step.
    with qtbot.assertNotEmitted(run.worker.frame_ready, wait=150):
        pass
    _finish(qtbot, run)
    assert got.reasons == ["stopped"]


def test_pause_takes_effect_within_one_step_and_resume_continues(qtbot, two_models):
    run, got = _start(qtbot, two_models, TraversalConfig(steps=100_000, step_size=0.001))
    qtbot.waitUntil(lambda: len(got.frames) > 5, timeout=5000)
    run.worker.pause()
    qtbot.wait(100)  # let frames computed before the pause arrive
    paused_at = len(got.frames)
    with qtbot.assertNotEmitted(run.worker.frame_ready, wait=200):
        pass
    assert len(got.frames) == paused_at
    with qtbot.waitSignal(in_gui_thread(run.worker.frame_ready, int, object), timeout=5000):
        run.worker.resume()
    qtbot.waitUntil(lambda: len(got.frames) > paused_at + 5, timeout=5000)
    assert got.steps == list(range(len(got.frames)))
    _finish(qtbot, run)


def test_stop_ends_the_thread_and_no_frame_follows(qtbot, two_models):
    run, got = _start(qtbot, two_models, TraversalConfig(steps=100_000, step_size=0.001))
    qtbot.waitUntil(lambda: len(got.frames) > 3, timeout=5000)
    with qtbot.waitSignal(in_gui_thread(run.worker.run_finished, int, str), timeout=5000) as blocker:
        run.stop()
    assert blocker.args[1] == "stopped"
    n = len(got.frames)
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)
    qtbot.wait(50)
    assert len(got.frames) == n


def test_stop_while_paused_wakes_the_worker(qtbot, two_models):
    run, got = _start(qtbot, two_models, TraversalConfig(steps=10), paused=True)
    qtbot.waitUntil(lambda: got.steps == [0], timeout=5000)
    _finish(qtbot, run)
    assert got.reasons == ["stopped"] and got.steps == [0]


def test_speed_limit_spaces_the_steps(qtbot, two_models):
    import time

    run, got = _start(qtbot, two_models, TraversalConfig(steps=6), steps_per_second=20)
    t0 = time.perf_counter()
    qtbot.waitUntil(lambda: got.reasons == ["completed"], timeout=5000)
    elapsed = time.perf_counter() - t0
    assert got.steps == list(range(7))
    assert elapsed >= 6 / 20 * 0.9  # six waits of 50 ms
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)


def test_stop_at_probability_ends_the_run_early(qtbot, linear_model):
    config = TraversalConfig(steps=500, step_size=0.5, objective="logit", stop_at_prob=0.9)
    run, got = _start(qtbot, [linear_model], config)
    qtbot.waitUntil(lambda: got.reasons == ["completed"], timeout=10_000)
    assert got.frames[-1].done.all() and got.frames[-1].step < 500
    assert got.frames[-1].probs[0, 0, 3] >= 0.9
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)


class NaNAfter(nn.Module):
    """Finite logits for the first ``k`` calls, then NaN."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.calls = 0
        self.w = nn.Parameter(torch.zeros(784, 10), requires_grad=False)

    def forward(self, x):
        self.calls += 1
        out = x.flatten(1) @ self.w + x.flatten(1).sum(1, keepdim=True) * torch.arange(10.0)
        return out * float("nan") if self.calls > self.k else out


def test_nan_from_a_model_reports_failure_after_the_valid_frames(qtbot):
    run, got = _start(qtbot, [NaNAfter(3)], TraversalConfig(steps=20))
    qtbot.waitUntil(lambda: got.reasons == ["failed"], timeout=5000)
    assert got.steps == [0, 1, 2]
    assert "NaN or inf at step 3" in got.failures[0]
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)


def test_no_thread_is_left_after_wait(qtbot, two_models):
    run, got = _start(qtbot, two_models, TraversalConfig(steps=100_000, step_size=0.001))
    qtbot.waitUntil(lambda: len(got.frames) > 0, timeout=5000)
    run.stop_and_wait()
    assert not run.is_running()


@pytest.mark.parametrize("bad", [np.full((28, 28), 2.0, np.float32)])
def test_invalid_input_fails_cleanly(qtbot, linear_model, bad):
    run = traversal_thread(TraversalWorker(1, [linear_model], bad, 3, TraversalConfig(steps=3)))
    got = Collector(run)
    with qtbot.waitSignal(in_gui_thread(run.worker.run_finished, int, str), timeout=5000):
        run.start()
    assert got.reasons == ["failed"] and "pixels must lie in [0, 1]" in got.failures[0]
    qtbot.waitUntil(lambda: not run.is_running(), timeout=5000)


def test_a_worker_thread_dropped_as_soon_as_its_run_ends_is_kept_until_its_thread_is_waited_for(qtbot, linear_model):
    """Its thread may still be deleting the worker after isRunning() turned False; destroying the
    QThread object then crashed that thread (seen in CI). The WorkerThread keeps itself alive until
    its thread has been waited for, whoever drops it."""
    import gc

    from trav_gui.qt import worker_thread

    bad = np.full((28, 28), 2.0, np.float32)  # fails at once: the shortest possible run
    for run_id in range(40):
        run = traversal_thread(TraversalWorker(run_id, [linear_model], bad, 3, TraversalConfig(steps=3)))
        with qtbot.waitSignal(in_gui_thread(run.worker.run_finished, int, str), timeout=5000):
            run.start()
        del run
        gc.collect()
    qtbot.waitUntil(lambda: not worker_thread._UNWAITED, timeout=10_000)
