"""Run control: the play / pause / step / stop state machine around the traversal worker.

The window says *what* to run (a :class:`RunContext`) and draws what the controller has;
the controller owns the worker threads, the run ids, the frames received so far
(:class:`~trav_gui.engine.runs.history.RunHistory`) and the measured speed. Frames of a run the
user already left are dropped by run id.

States: ``idle`` (nothing on screen), ``playing``, ``paused``, and after a run
``completed``, ``stopped`` or ``failed`` (its frames stay to scrub and export).
"""

from __future__ import annotations

import collections
import time
from typing import Sequence

from PySide6.QtCore import QObject, QThread, Signal, Slot
from torch import nn

from trav_gui.engine.runs.context import RunContext
from trav_gui.engine.runs.history import RunHistory
from trav_gui.qt.worker import TraversalWorker
from trav_gui.qt.worker_thread import WorkerThread

__all__ = ["RunController"]


class RunController(QObject):
    """Starts, steers and ends traversal runs, one on screen at a time.

    Signals
    -------
    started(run_id)
    frames_added() : new frames are in :attr:`history`.
    failed(message) : the run on screen hit an error (its frames so far are kept).
    finished(reason) : the run on screen ended: ``completed``, ``stopped`` or ``failed``.
    status_changed(status)
    """

    started = Signal(int)
    frames_added = Signal()
    failed = Signal(str)
    finished = Signal(str)
    status_changed = Signal(str)

    def __init__(self, parent: QObject | None = None, worker_factory=TraversalWorker) -> None:
        super().__init__(parent)
        # Called like TraversalWorker; the tests pass a fake to steer the controller by hand.
        self._worker_factory = worker_factory
        self._runs: dict[int, WorkerThread] = {}  # every run whose thread has not ended
        self._run: WorkerThread | None = None  # the run on screen, while it runs
        self._counter = 0
        self.context: RunContext | None = None
        self.history: RunHistory | None = None
        self.status = "idle"
        self.speed_limit: float | None = None  # steps per second; None: as fast as possible
        self._rate: collections.deque = collections.deque(maxlen=120)  # (arrival time, frames)

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """A worker is computing (or paused in) the run on screen."""
        return self._run is not None

    @property
    def run_id(self) -> int:
        """The id of the newest run (0 before the first)."""
        return self._counter

    @property
    def paused(self) -> bool:
        return self._run is not None and self._run.worker.is_paused

    def threads(self) -> list[QThread]:
        """The threads of runs not yet ended (the run on screen and stopped ones winding down)."""
        return [r.thread for r in self._runs.values()]

    def steps_per_second(self, window_s: float = 1.0) -> float | None:
        """Steps received per second over the last ``window_s`` seconds; None if unknown."""
        now = time.perf_counter()
        recent = [(t, n) for t, n in self._rate if now - t <= window_s]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        return sum(n for _, n in recent[1:]) / (recent[-1][0] - recent[0][0])

    def _set_status(self, status: str) -> None:
        self.status = status
        self.status_changed.emit(status)

    # ------------------------------------------------------------------ commands

    def start(self, context: RunContext, models: Sequence[nn.Module], paused: bool = False,
              steps_per_second: float | None = None, scorer=None) -> RunContext:
        """Leave the current run and start ``context`` (returned with its run id)."""
        self.leave()
        self._counter += 1
        context = RunContext(context.models, context.image, context.test_index, context.target,
                             context.config, run_id=self._counter)
        worker = self._worker_factory(context.run_id, models, context.image, context.target, context.config,
                                      paused=paused, steps_per_second=steps_per_second, scorer=scorer,
                                      entries=context.models)
        run = WorkerThread(worker, f"traversal-run-{context.run_id}", worker.run_finished, self)
        worker.frame_ready.connect(self._on_worker_frame_ready)
        worker.realism_ready.connect(self._on_worker_realism_ready)
        worker.run_failed.connect(self._on_worker_run_failed)
        worker.run_finished.connect(self._on_worker_run_finished)
        run.thread_finished.connect(lambda run_id=context.run_id: self._on_run_thread_finished(run_id))
        self.speed_limit = steps_per_second or None
        self._runs[context.run_id] = run
        self._run = run
        self.context = context
        self.history = RunHistory(len(models), context.target, capacity=context.config.steps + 1,
                                  image_shape=context.image.shape)
        self._rate.clear()
        self._set_status("paused" if paused else "playing")
        run.start()
        self.started.emit(context.run_id)
        return context

    def resume(self) -> None:
        if self._run is not None:
            self._run.worker.resume()
            self._set_status("playing")

    def pause(self) -> None:
        if self._run is not None:
            self._run.worker.pause()
            self._set_status("paused")

    def toggle(self) -> None:
        """Pause a playing run, resume a paused one."""
        if self.paused:
            self.resume()
        else:
            self.pause()

    def step_once(self) -> None:
        """One more step of the run on screen (pausing it if it plays)."""
        if self._run is not None:
            self._run.worker.step_once()
            self._set_status("paused")

    def set_speed(self, steps_per_second: float | None) -> None:
        self.speed_limit = steps_per_second or None
        if self._run is not None:
            self._run.worker.set_steps_per_second(steps_per_second or None)

    def stop(self) -> None:
        """End the run on screen; its frames stay."""
        if self._run is not None:
            self._finish("stopped")

    def leave(self) -> None:
        """End the run on screen (if any) and forget its frames: back to idle."""
        if self._run is not None:
            self._finish("stopped")
        self.history = None
        self.context = None
        self._set_status("idle")

    def shutdown(self) -> None:
        """Stop every run and wait for its thread (the window calls this when closing)."""
        self._run = None
        for run in list(self._runs.values()):
            run.stop_and_wait()
        self._runs.clear()

    def _finish(self, reason: str) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.stop()
        self._set_status(reason)
        self.finished.emit(reason)

    # ------------------------------------------------------------------ worker signals

    def _current(self, run_id: int) -> bool:
        return self._run is not None and run_id == self._run.worker.run_id

    @Slot(int, object)
    def _on_worker_frame_ready(self, run_id: int, frames: list) -> None:
        if not self._current(run_id) or self.history is None:
            return  # a run we already left
        for frame in frames:
            self.history.append(frame)
        self._rate.append((time.perf_counter(), len(frames)))
        self.frames_added.emit()

    @Slot(int, object, object)
    def _on_worker_realism_ready(self, run_id: int, indices, realism) -> None:
        if self._current(run_id) and self.history is not None:
            self.history.add_realism(indices, realism)
            self.frames_added.emit()

    @Slot(int, str)
    def _on_worker_run_failed(self, run_id: int, message: str) -> None:
        if self._current(run_id):
            self.failed.emit(message)

    @Slot(int, str)
    def _on_worker_run_finished(self, run_id: int, reason: str) -> None:
        if self._current(run_id):
            self._finish(reason)

    def _on_run_thread_finished(self, run_id: int) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.deleteLater()
