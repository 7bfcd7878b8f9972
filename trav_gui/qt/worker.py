"""The traversal worker: runs one :class:`~trav_gui.engine.runs.live.LiveRun` in a QThread.

Why a hand-written QThread worker rather than superqt's ``thread_worker``: superqt runs its
generator workers on ``QThreadPool`` threads, which outlive a run and cannot be waited for
one by one, and its pause loop knows neither "let exactly one step through" nor a speed
limit. Here each run owns one ``QThread`` (a :class:`~trav_gui.qt.worker_thread.WorkerThread`);
the loop (the engine's ``LiveRun``) checks a ``threading.Event`` to stop and a condition for
pause, single steps and the steps-per-second limit, so every control takes effect within one
step, even while the event loop of the worker's thread is busy.

Frames arrive in batches: at most about 60 emits per second however fast the steps are,
so a fast run does not flood the GUI's event loop. Every emit carries the run id, so the
window can drop frames of a run it already left. The same signals come from
:class:`~trav_gui.qt.process_worker.ProcessTraversalWorker`, which runs the loop in the app's
compute process instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from torch import nn

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.runs.live import LiveRun

__all__ = ["TraversalWorker", "WorkerSignals"]


class WorkerSignals(QObject):
    """The signals of a traversal worker, and the controls every worker has (its run's ``controls``).

    Signals
    -------
    frame_ready(run_id, frames) : list of new :class:`~trav_gui.engine.core.traversal.Frame`\\ s, in step order.
    realism_ready(run_id, indices, realism) : with a ``scorer``: the
        :class:`~trav_gui.engine.realism.Realism` ((k, M, ...) arrays) of the frames at
        ``indices`` (sent since the last one, at most every 0.25 s while playing and once
        more before ``run_finished``): every frame's nearest-real ratio, the judge on the
        newest of them (NaN for the others).
    run_failed(run_id, message) : the run hit an error (NaN from a model, ...).
    run_finished(run_id, reason) : ``"completed"``, ``"stopped"`` or ``"failed"``; always last.
    """

    frame_ready = Signal(int, object)
    realism_ready = Signal(int, object, object)
    run_failed = Signal(int, str)
    run_finished = Signal(int, str)

    def __init__(self, run_id: int, controls) -> None:
        super().__init__()
        self.run_id = run_id
        # The run's controls: a LiveRun's RunControls, or a RemoteRun (the same methods).
        self.controls = controls

    # --- controls: called from the GUI thread, take effect within one step -------------

    def stop(self) -> None:
        """Stop after the current step; no frame computed after this call is emitted."""
        self.controls.stop()

    def pause(self) -> None:
        self.controls.pause()

    def resume(self) -> None:
        self.controls.resume()

    def step_once(self) -> None:
        """While paused, let exactly one more step through."""
        self.controls.step_once()

    def set_steps_per_second(self, steps_per_second: float | None) -> None:
        self.controls.set_steps_per_second(steps_per_second)

    @property
    def is_paused(self) -> bool:
        return self.controls.is_paused

    # --- the LiveRun's sink: called in the worker's thread -------------------------------

    def frames(self, frames: list) -> None:
        self.frame_ready.emit(self.run_id, frames)

    def realism(self, indices: np.ndarray, realism) -> None:
        self.realism_ready.emit(self.run_id, indices, realism)

    def failed(self, message: str) -> None:
        self.run_failed.emit(self.run_id, message)


class TraversalWorker(WorkerSignals):
    """Runs one traversal in this process; lives in its own QThread (run it with a ``WorkerThread``).

    Parameters
    ----------
    run_id : int tagging every signal of this run.
    models, x0, target, config, paused, steps_per_second, scorer : as
        :class:`~trav_gui.engine.runs.live.LiveRun` takes them.
    entries : the models' listing entries (unused here: the models are given loaded).
    """

    def __init__(self, run_id: int, models: Sequence[nn.Module], x0: np.ndarray, target: int,
                 config: TraversalConfig, paused: bool = False,
                 steps_per_second: float | None = None, scorer=None, entries=None) -> None:
        self._live = LiveRun(models, x0, target, config, paused, steps_per_second, scorer)
        super().__init__(run_id, self._live.controls)

    @Slot()
    def run(self) -> None:
        reason = self._live.run(self)
        self.run_finished.emit(self.run_id, reason)
