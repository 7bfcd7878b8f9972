"""The compute process: the app's runs computed in a child process, controlled and read from the app.

These start real child processes (a torch import each, about 2 s), so they share one where
they can.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data import datasets
from trav_gui.engine.models.loading import load_model, resolve_model_path
from trav_gui.engine.runs.process import ComputeProcess, ComputeProcessError, RunJob

X0 = datasets.test_digits()[0][15].astype(np.float32) / 255.0
ROBUST, STANDARD = (str(resolve_model_path(n)) for n in ("robust", "standard"))


@pytest.fixture(scope="module")
def process():
    p = ComputeProcess()
    p.start()
    yield p
    p.close()


def collect(run, limit_s: float = 60.0) -> dict:
    got = {"frames": [], "realism": [], "failed": [], "finished": []}
    deadline = time.monotonic() + limit_s
    for message in run.events():
        assert message[1] == run.run_id
        got[message[0]].append(message[2:])
        assert time.monotonic() < deadline
    got["frames"] = [f for (batch,) in got["frames"] for f in batch]
    return got


def test_a_run_in_the_child_gives_the_frames_of_the_engine_in_this_process(process):
    config = TraversalConfig(steps=30, step_size=0.1)
    got = collect(process.play(RunJob((ROBUST, STANDARD), X0, 0, config)))
    assert got["finished"] == [("completed",)] and not got["failed"]
    assert [f.step for f in got["frames"]] == list(range(31))
    here = list(traverse([load_model("robust"), load_model("standard")], X0, 0, config, shape=(1, 28, 28)))
    for theirs, ours in zip(got["frames"], here):
        np.testing.assert_allclose(theirs.images, ours.images, atol=1e-5)
        np.testing.assert_allclose(theirs.probs, ours.probs, atol=1e-5)


def test_realism_of_every_frame_comes_from_the_child(process):
    got = collect(process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=20), realism="mnist")))
    indices = np.concatenate([i for i, _ in got["realism"]])
    assert sorted(indices.tolist()) == list(range(21))
    ratios = np.concatenate([r.nn_ratio for _, r in got["realism"]])
    assert ratios.shape == (21, 1) and np.isfinite(ratios).all()


def test_controls_made_before_the_job_is_sent_follow_it(process):
    """Started paused and stepped twice at once, as the window's right arrow does: frames 0, 1, 2."""
    run = process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=100), paused=True))
    run.step_once()
    run.step_once()
    assert run.is_paused
    watchdog = threading.Timer(20, run.stop)  # if a step is lost, the run ends and the test fails
    watchdog.start()
    seen = []
    for message in run.events():
        if message[0] == "frames":
            seen += [f.step for f in message[2]]
            if seen == [0, 1, 2]:
                time.sleep(0.3)  # paused: nothing more may come
                run.stop()
        if message[0] == "finished":
            assert message[2] == "stopped"
    watchdog.cancel()
    assert seen == [0, 1, 2]


def test_a_speed_limit_and_pause_reach_the_child(process):
    run = process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=10_000, step_size=0.001),
                              steps_per_second=20))
    t0, steps = time.monotonic(), []
    for message in run.events():
        if message[0] == "frames":
            steps += [f.step for f in message[2]]
            if time.monotonic() - t0 > 1.0 and not run.stopped:
                run.stop()
    rate = len(steps) / (time.monotonic() - t0)
    assert 5 < rate < 40  # 20 steps/s asked, not thousands


def test_a_model_that_cannot_load_fails_its_run_with_the_reason_and_the_next_run_works(process, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    got = collect(process.play(RunJob((str(bad),), X0, 0, TraversalConfig(steps=3))))
    assert got["finished"] == [("failed",)]
    assert "broken.safetensors" in got["failed"][0][0]
    again = collect(process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=3))))
    assert again["finished"] == [("completed",)]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_child_that_dies_fails_the_run_with_its_exit_code_and_the_next_run_starts_a_new_one():
    process = ComputeProcess()
    try:
        run = process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=100_000, step_size=1e-4)))
        events = run.events()
        assert next(events)[0] == "frames"
        os.kill(process.pid, signal.SIGKILL)
        with pytest.raises(ComputeProcessError, match="ended unexpectedly.*-9"):
            for _ in events:
                pass
        old = process.pid
        got = collect(process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=3))))
        assert got["finished"] == [("completed",)] and process.pid != old
    finally:
        process.close()


def test_close_ends_the_child_and_a_run_left_before_it_was_sent_is_never_computed():
    process = ComputeProcess()
    process.start()
    child = process._child
    run = process.play(RunJob((ROBUST,), X0, 0, TraversalConfig(steps=3)))
    run.stop()
    assert list(run.events()) == [("finished", run.run_id, "stopped")]
    process.close()
    assert child.poll() is not None and not process.alive


# ------------------------------------------------------------------ the window


def test_the_window_computes_in_its_process_draws_the_run_and_ends_the_process_when_closed(qtbot):
    from trav_gui.qt.process_worker import ProcessTraversalWorker
    from trav_gui.qt.window import MainWindow

    window = MainWindow(compute="process")
    qtbot.addWidget(window)
    child = window.workers.process._child
    window.input_panel.pick_example(15)
    window.set_target(0)
    window.settings.max_steps.setValue(40)
    window.realism_action.setChecked(True)
    with qtbot.waitSignal(window.run_finished, timeout=60_000) as done:
        window.play()
        worker = window.runs._run.worker
    assert done.args == ["completed"]
    assert isinstance(worker, ProcessTraversalWorker)
    h = window.runs.history
    assert len(h) == 41 and h.has_realism and np.isfinite(h.nn_ratio).all()
    here = list(traverse([load_model("robust"), load_model("standard")], X0, 0, window.runs.context.config,
                         shape=(1, 28, 28)))
    np.testing.assert_allclose(h.images[-1], here[-1].images[:, 0], atol=1e-5)
    window.close()
    assert child.wait(10) is not None


def test_in_memory_models_run_in_a_thread_and_a_bad_compute_setting_is_refused(linear_model):
    from trav_gui.engine.models.card import ModelCard, ModelEntry
    from trav_gui.qt.process_worker import ProcessWorkers, worker_factory
    from trav_gui.qt.worker import TraversalWorker

    assert worker_factory("thread", "cpu") is None
    with pytest.raises(ValueError, match="process' or 'thread'"):
        worker_factory("gpu", "cpu")
    workers = ProcessWorkers("cpu")
    try:
        entry = ModelEntry("mine", None, "memory", ModelCard(name="mine", kind="standard"))
        worker = workers(1, [linear_model], X0, 3, TraversalConfig(steps=2), entries=[entry])
        assert isinstance(worker, TraversalWorker)
    finally:
        workers.close()
