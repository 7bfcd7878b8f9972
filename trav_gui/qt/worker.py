"""The traversal worker: runs the engine's generator in a QThread, with play, pause and step.

Why a hand-written QThread worker rather than superqt's ``thread_worker``: superqt runs its
generator workers on ``QThreadPool`` threads, which outlive a run and cannot be waited for
one by one, and its pause loop knows neither "let exactly one step through" nor a speed
limit. Here each run owns one ``QThread`` (a :class:`~trav_gui.qt.worker_thread.WorkerThread`);
the loop checks a ``threading.Event`` to stop and a condition for pause, single steps and
the steps-per-second limit, so every control takes effect within one step, even while the
event loop of the worker's thread is busy.

Frames arrive in batches: at most about 60 emits per second however fast the steps are,
so a fast run does not flood the GUI's event loop. Every emit carries the run id, so the
window can drop frames of a run it already left.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from torch import nn

from trav_gui.engine.core.traversal import Frame, NonFiniteOutputError, TraversalConfig, traverse

__all__ = ["TraversalWorker"]

EMIT_INTERVAL_S = 1 / 60
# Realism is computed at most this often while a run plays (all frames' nearest-real ratio,
# the judge on the newest): judging every frame cost the app about 40 % of its speed,
# every 0.1 s 14 %, every 0.25 s 6 % (benchmarks/bench_app.py).
REALISM_INTERVAL_S = 0.25


class TraversalWorker(QObject):
    """Runs one traversal; lives in its own QThread (run it with a ``WorkerThread``).

    Parameters
    ----------
    run_id : int tagging every signal of this run.
    models : M models in eval mode on one device.
    x0 : one image, grey (H, W) or colour (3, H, W), float32 in [0, 1]: the start.
    target : int in 0..K-1.
    config : the run's settings.
    paused : start paused (frame 0 is still computed and emitted at once).
    steps_per_second : speed limit, or None for as fast as possible.

    Signals
    -------
    frame_ready(run_id, frames) : list of new :class:`Frame`\\ s, in step order.
    realism_ready(run_id, indices, realism) : with a ``scorer``: the
        :class:`~trav_gui.engine.realism.Realism` ((k, M, ...) arrays) of the frames at
        ``indices`` (sent since the last one, at most every ``REALISM_INTERVAL_S`` and once
        more before ``run_finished``), computed in the worker: every frame's nearest-real
        ratio, the judge on the newest of them (NaN for the others).
    run_failed(run_id, message) : the run hit an error (NaN from a model, ...).
    run_finished(run_id, reason) : ``"completed"``, ``"stopped"`` or ``"failed"``; always last.
    """

    frame_ready = Signal(int, object)
    realism_ready = Signal(int, object, object)
    run_failed = Signal(int, str)
    run_finished = Signal(int, str)

    def __init__(self, run_id: int, models: Sequence[nn.Module], x0: np.ndarray, target: int,
                 config: TraversalConfig, paused: bool = False,
                 steps_per_second: float | None = None, scorer=None) -> None:
        super().__init__()
        self._scorer = scorer  # a RealismScorer, or None
        self._emitted = 0
        self._unscored: list[tuple[int, np.ndarray]] = []  # (frame index, images (M, *image shape))
        self._scored_at = 0.0
        self.run_id = run_id
        self._models = list(models)
        self._x0 = np.array(x0, dtype=np.float32, copy=True)
        self._target = int(target)
        self._config = config
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._paused = paused
        self._tokens = 0
        self._interval = self._interval_of(steps_per_second)

    @staticmethod
    def _interval_of(steps_per_second: float | None) -> float:
        return 0.0 if not steps_per_second else 1.0 / float(steps_per_second)

    # --- controls: called from the GUI thread, take effect within one step -------------

    def stop(self) -> None:
        """Stop after the current step; no frame computed after this call is emitted."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._tokens = 0

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def step_once(self) -> None:
        """While paused, let exactly one more step through."""
        with self._cond:
            self._paused = True
            self._tokens += 1
            self._cond.notify_all()

    def set_steps_per_second(self, steps_per_second: float | None) -> None:
        with self._cond:
            self._interval = self._interval_of(steps_per_second)
            self._cond.notify_all()

    @property
    def is_paused(self) -> bool:
        with self._cond:
            return self._paused

    # --- the loop ----------------------------------------------------------------------

    def _wait_turn(self, last_step_at: float) -> bool:
        """Block until the next step may run; False when stopped."""
        with self._cond:
            while not self._stop.is_set():
                if self._paused:
                    if self._tokens > 0:
                        self._tokens -= 1
                        return True
                    self._cond.wait()
                    continue
                remaining = last_step_at + self._interval - time.perf_counter()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)
            return False

    def _must_flush(self, last_emit: float) -> bool:
        with self._cond:
            slow = self._paused or self._interval >= EMIT_INTERVAL_S
        return slow or time.perf_counter() - last_emit >= EMIT_INTERVAL_S

    def _score_unscored(self) -> None:
        """Here, in the worker, never on the GUI thread: the realism of the frames sent since
        the last time (a separate judging thread was measured slower on 2 cores)."""
        if not self._unscored or self._stop.is_set():
            return
        part, self._unscored = self._unscored, []
        realism = self._scorer.sampled(np.stack([im for _, im in part]), self._target, start=self._x0)
        self.realism_ready.emit(self.run_id, np.array([i for i, _ in part]), realism)
        self._scored_at = time.perf_counter()

    @Slot()
    def run(self) -> None:
        pending: list[Frame] = []
        last_emit = 0.0
        reason = "completed"

        def flush() -> None:
            nonlocal pending, last_emit
            if pending and not self._stop.is_set():
                self.frame_ready.emit(self.run_id, pending)
                if self._scorer is not None:
                    self._unscored += [(self._emitted + i, f.images[:, 0]) for i, f in enumerate(pending)]
                self._emitted += len(pending)
                with self._cond:  # paused, stepping or slower than the realism rate: every frame
                    slow = self._paused or self._interval >= REALISM_INTERVAL_S
                if self._scorer is not None and (slow or time.perf_counter() - self._scored_at >= REALISM_INTERVAL_S):
                    self._score_unscored()
            pending = []
            last_emit = time.perf_counter()

        try:
            # One start image: (H, W) is grey, (3, H, W) colour.
            shape = (1, *self._x0.shape) if self._x0.ndim == 2 else tuple(self._x0.shape)
            frames = traverse(self._models, self._x0, self._target, self._config, shape=shape)
            last_step_at = time.perf_counter()
            for k, frame in enumerate(frames):
                if self._stop.is_set():
                    reason = "stopped"
                    break
                pending.append(frame)
                if k == 0 or self._must_flush(last_emit):
                    flush()
                if frame.step == self._config.steps or bool(frame.done.all()):
                    break
                if not self._wait_turn(last_step_at):
                    reason = "stopped"
                    break
                last_step_at = time.perf_counter()
            flush()
            if self._scorer is not None:
                self._score_unscored()  # the last frames, before run_finished
        except NonFiniteOutputError as exc:
            flush()
            reason = "failed"
            kept = (f"Frames up to step {exc.step - 1} are kept and can be exported." if exc.step
                    else "No frame could be computed.")
            self.run_failed.emit(self.run_id, f"{exc}. {kept}")
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a silent thread death
            reason = "failed"
            self.run_failed.emit(self.run_id, f"{type(exc).__name__}: {exc}")
        if self._stop.is_set():
            reason = "stopped"
        self.run_finished.emit(self.run_id, reason)

