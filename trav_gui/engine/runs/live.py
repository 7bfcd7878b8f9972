"""One traversal played live: play, pause, single steps, a speed limit, stop; frames sent in batches.

The loop the app runs, without Qt, so that it runs the same in a thread of the app
(:mod:`trav_gui.qt.worker`) and in the app's compute process (:mod:`trav_gui.engine.runs.process`).
Its controls are safe to call from any thread and take effect within one step. What it
produces goes to a :class:`RunSink`: frames in batches (at most about 60 a second however
fast the steps are), the realism of the frames sent (at most every 0.25 s while playing),
a failure, and always last the reason it ended.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, Sequence

import numpy as np
from torch import nn

from trav_gui.engine.core.traversal import Frame, NonFiniteOutputError, TraversalConfig, traverse

__all__ = ["EMIT_INTERVAL_S", "REALISM_INTERVAL_S", "LiveRun", "RunControls", "RunSink"]

EMIT_INTERVAL_S = 1 / 60
# Realism is computed at most this often while a run plays (all frames' nearest-real ratio,
# the judge on the newest): judging every frame cost the app about 40 % of its speed,
# every 0.1 s 14 %, every 0.25 s 6 % (benchmarks/bench_app.py).
REALISM_INTERVAL_S = 0.25


class RunSink(Protocol):
    """Where a :class:`LiveRun` sends what it produces (called from the run's own thread)."""

    def frames(self, frames: list[Frame]) -> None:
        """New frames, in step order."""

    def realism(self, indices: np.ndarray, realism) -> None:
        """The :class:`~trav_gui.engine.realism.Realism` of the frames at ``indices``."""

    def failed(self, message: str) -> None:
        """The run hit an error; the frames sent so far stand."""


class RunControls:
    """Play, pause, single steps, a speed limit and stop, for one run: safe to call from any
    thread, effective within one step (a run waits on them between steps).

    Parameters
    ----------
    paused : start paused.
    steps_per_second : speed limit, or None for as fast as possible.
    """

    def __init__(self, paused: bool = False, steps_per_second: float | None = None) -> None:
        self.stopped_event = threading.Event()
        self._cond = threading.Condition()
        self._paused = paused
        self._tokens = 0
        self._interval = self._interval_of(steps_per_second)

    @staticmethod
    def _interval_of(steps_per_second: float | None) -> float:
        return 0.0 if not steps_per_second else 1.0 / float(steps_per_second)

    def stop(self) -> None:
        """Stop after the current step; nothing computed after this call is sent."""
        self.stopped_event.set()
        with self._cond:
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self.stopped_event.is_set()

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

    def wait_turn(self, last_step_at: float) -> bool:
        """Block until the next step may run; False when stopped."""
        with self._cond:
            while not self.stopped_event.is_set():
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

    def slow(self, interval: float) -> bool:
        """Paused, stepping, or limited to steps at least ``interval`` apart."""
        with self._cond:
            return self._paused or self._interval >= interval


class LiveRun:
    """One traversal, stepped under controls from other threads.

    Parameters
    ----------
    models : M models in eval mode on one device.
    x0 : one image, grey (H, W) or colour (3, H, W), float32 in [0, 1]: the start.
    target : int in 0..K-1.
    config : the run's settings.
    paused : start paused (frame 0 is still computed and sent at once).
    steps_per_second : speed limit, or None for as fast as possible.
    scorer : a :class:`~trav_gui.engine.realism.RealismScorer`, or None: with one, every frame
        sent gets its nearest-real ratio and the newest of each batch the judge's verdict.
    controls : its :class:`RunControls`, when they must exist before the run does (the compute
        process takes controls while it still loads the models); else made from ``paused`` and
        ``steps_per_second``.
    """

    def __init__(self, models: Sequence[nn.Module], x0: np.ndarray, target: int, config: TraversalConfig,
                 paused: bool = False, steps_per_second: float | None = None, scorer=None,
                 controls: RunControls | None = None) -> None:
        self._models = list(models)
        self._x0 = np.array(x0, dtype=np.float32, copy=True)
        self._target = int(target)
        self._config = config
        self._scorer = scorer
        self._emitted = 0
        self._unscored: list[tuple[int, np.ndarray]] = []  # (frame index, images (M, *image shape))
        self._scored_at = 0.0
        self.controls = controls if controls is not None else RunControls(paused, steps_per_second)

    def _score_unscored(self, sink: RunSink) -> None:
        """The realism of the frames sent since the last time (here, in the run's thread: a
        separate judging thread was measured slower on 2 cores)."""
        if not self._unscored or self.controls.stopped:
            return
        part, self._unscored = self._unscored, []
        realism = self._scorer.sampled(np.stack([im for _, im in part]), self._target, start=self._x0)
        sink.realism(np.array([i for i, _ in part]), realism)
        self._scored_at = time.perf_counter()

    def run(self, sink: RunSink) -> str:
        """Step until the end, a stop or an error; the reason: ``"completed"``, ``"stopped"`` or ``"failed"``."""
        pending: list[Frame] = []
        last_emit = 0.0
        reason = "completed"

        def flush() -> None:
            nonlocal pending, last_emit
            if pending and not self.controls.stopped:
                sink.frames(pending)
                if self._scorer is not None:
                    self._unscored += [(self._emitted + i, f.images[:, 0]) for i, f in enumerate(pending)]
                self._emitted += len(pending)
                due = time.perf_counter() - self._scored_at >= REALISM_INTERVAL_S
                if self._scorer is not None and (due or self.controls.slow(REALISM_INTERVAL_S)):
                    self._score_unscored(sink)
            pending = []
            last_emit = time.perf_counter()

        try:
            # One start image: (H, W) is grey, (3, H, W) colour.
            shape = (1, *self._x0.shape) if self._x0.ndim == 2 else tuple(self._x0.shape)
            frames = traverse(self._models, self._x0, self._target, self._config, shape=shape)
            last_step_at = time.perf_counter()
            for k, frame in enumerate(frames):
                if self.controls.stopped:
                    reason = "stopped"
                    break
                pending.append(frame)
                if k == 0 or time.perf_counter() - last_emit >= EMIT_INTERVAL_S or self.controls.slow(EMIT_INTERVAL_S):
                    flush()
                if frame.step == self._config.steps or bool(frame.done.all()):
                    break
                if not self.controls.wait_turn(last_step_at):
                    reason = "stopped"
                    break
                last_step_at = time.perf_counter()
            flush()
            if self._scorer is not None:
                self._score_unscored(sink)  # the last frames, before the end
        except NonFiniteOutputError as exc:
            flush()
            reason = "failed"
            kept = (f"Frames up to step {exc.step - 1} are kept and can be exported." if exc.step
                    else "No frame could be computed.")
            sink.failed(f"{exc}. {kept}")
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a silent death
            reason = "failed"
            sink.failed(f"{type(exc).__name__}: {exc}")
        if self.controls.stopped:
            reason = "stopped"
        return reason
