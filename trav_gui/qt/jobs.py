"""One-shot background jobs (export, gallery): a function run once in its own QThread.

The traversal worker is different (play, pause, single steps, a speed limit) and keeps its
own loop in :mod:`trav_gui.qt.worker`. Everything that just runs to the end, reports
progress and may be cancelled goes through :class:`BackgroundJob`:

    job = BackgroundJob("export", lambda progress, cancelled: export_run(..., progress=progress,
                                                                        cancel=cancelled))
    job.succeeded.connect(...); job.failed.connect(...); job.start()

Each job owns one ``QThread`` (a :class:`~trav_gui.qt.worker_thread.WorkerThread`, as the
traversal worker does) that ends when the function returns.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from trav_gui.qt.worker_thread import WorkerThread

__all__ = ["BackgroundJob", "JobCancelled"]

Progress = Callable[[int, int, str], None]
JobFunction = Callable[[Progress, Callable[[], bool]], Any]


class JobCancelled(Exception):
    """Raised inside a job (by its function, or by ``progress`` once cancelled) to stop it."""


class _Runner(QObject):
    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(str)
    done = Signal()  # after succeeded or failed: the thread may end

    def __init__(self, fn: JobFunction, describe_error: Callable[[BaseException], str]) -> None:
        super().__init__()
        self._fn, self._describe = fn, describe_error
        self.cancelled = threading.Event()

    def stop(self) -> None:
        self.cancelled.set()

    def _progress(self, done: int, total: int, what: str = "") -> None:
        if self.cancelled.is_set():
            raise JobCancelled
        self.progress.emit(int(done), int(total), str(what))

    @Slot()
    def run(self) -> None:
        try:
            result = self._fn(self._progress, self.cancelled.is_set)
        except JobCancelled:
            self.failed.emit("cancelled")
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never lost in a thread
            self.failed.emit(self._describe(exc))
        else:
            self.succeeded.emit(result)
        self.done.emit()


def _default_description(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class BackgroundJob(QObject):
    """Run ``fn(progress, cancelled)`` once in its own QThread.

    Parameters
    ----------
    name : the thread's name (shown by debuggers and by the tests' thread-leak check).
    fn : does the work; calls ``progress(done, total, what)`` as it goes and may poll
        ``cancelled()``. Its return value is emitted with ``succeeded``. Once the job is
        cancelled, ``progress`` raises :class:`JobCancelled`.
    describe_error : turns an exception of ``fn`` into the message of ``failed``.

    Signals
    -------
    progress(done, total, what)
    succeeded(result)
    failed(message) : ``"cancelled"`` when cancelled.
    thread_finished() : the thread has ended (and been waited for); the job may be dropped.
    """

    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(str)
    thread_finished = Signal()

    def __init__(self, name: str, fn: JobFunction,
                 describe_error: Callable[[BaseException], str] = _default_description,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._runner = _Runner(fn, describe_error)
        self._runner.progress.connect(self.progress)
        self._runner.succeeded.connect(self.succeeded)
        self._runner.failed.connect(self.failed)
        self._thread = WorkerThread(self._runner, name, self._runner.done, self)
        self._thread.thread_finished.connect(self.thread_finished)

    @property
    def thread(self) -> QThread:
        return self._thread.thread

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report or cancellation check."""
        self._runner.cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._runner.cancelled.is_set()

    def is_running(self) -> bool:
        return self._thread.is_running()

    def stop_and_wait(self) -> None:
        """Cancel and block until the thread has ended."""
        self._thread.stop_and_wait()
