"""The traversal worker of the app: the run is computed in the compute process, the QThread relays it.

:class:`ProcessTraversalWorker` has the signals and controls of
:class:`~trav_gui.qt.worker.TraversalWorker`; its thread only reads what the compute process
(:mod:`trav_gui.engine.runs.process`) sends and emits it, so the traversal never waits for the
GUI thread's drawing. :class:`ProcessWorkers` is the window's worker factory: models that
live only in memory (``trav_gui.show(models=...)``) cannot be sent by path and run in a
thread as before.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PySide6.QtCore import Slot
from torch import nn

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.models.card import ModelEntry
from trav_gui.engine.runs.process import ComputeProcess, ComputeProcessError, RunJob
from trav_gui.qt.worker import TraversalWorker, WorkerSignals

__all__ = ["ProcessTraversalWorker", "ProcessWorkers", "worker_factory"]


class ProcessTraversalWorker(WorkerSignals):
    """Relays one run of ``process`` (started at once, from ``job``) as a traversal worker's signals."""

    def __init__(self, run_id: int, process: ComputeProcess, job: RunJob) -> None:
        self._remote = process.play(job)
        super().__init__(run_id, self._remote)

    @Slot()
    def run(self) -> None:
        reason = "failed"
        try:
            for message in self._remote.events():
                kind = message[0]
                if kind == "finished":
                    reason = message[2]
                elif kind == "failed":
                    self.run_failed.emit(self.run_id, message[2])
                elif self._remote.stopped:
                    continue  # computed before the stop reached the process: not shown
                elif kind == "frames":
                    self.frame_ready.emit(self.run_id, message[2])
                elif kind == "realism":
                    self.realism_ready.emit(self.run_id, message[2], message[3])
        except ComputeProcessError as exc:
            self.run_failed.emit(self.run_id, f"{str(exc)[0].upper()}{str(exc)[1:]}.")
        if self._remote.stopped and reason != "failed":
            reason = "stopped"
        self.run_finished.emit(self.run_id, reason)


class ProcessWorkers:
    """A :class:`~trav_gui.qt.run_controller.RunController`'s worker factory that computes runs in
    one compute process, started when this factory is made.

    Parameters
    ----------
    device : where the compute process runs the models (:attr:`device` may change between runs).
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self.process = ComputeProcess()
        self.process.start()

    def __call__(self, run_id: int, models: Sequence[nn.Module], x0: np.ndarray, target: int,
                 config: TraversalConfig, paused: bool = False, steps_per_second: float | None = None,
                 scorer=None, entries: Sequence[ModelEntry] | None = None) -> WorkerSignals:
        if not entries or any(e.path is None for e in entries):
            return TraversalWorker(run_id, models, x0, target, config, paused, steps_per_second, scorer)
        job = RunJob(tuple(str(e.path) for e in entries), np.asarray(x0, np.float32), int(target), config,
                     paused, steps_per_second, scorer.dataset if scorer is not None else None, self.device)
        return ProcessTraversalWorker(run_id, self.process, job)

    def close(self) -> None:
        """End the compute process (the window calls this when it closes, after its runs ended)."""
        self.process.close()


def worker_factory(compute: str | None, device: str) -> ProcessWorkers | None:
    """The window's worker factory for ``compute`` (``"process"`` or ``"thread"``; None: the
    environment's ``TRAV_GUI_COMPUTE``, else ``"process"``): None for threads."""
    compute = compute or os.environ.get("TRAV_GUI_COMPUTE") or "process"
    if compute not in ("process", "thread"):
        raise ValueError(f"compute must be 'process' or 'thread', not {compute!r} (TRAV_GUI_COMPUTE)")
    return ProcessWorkers(device) if compute == "process" else None
