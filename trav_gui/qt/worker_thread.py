"""One worker object in its own QThread: started, stopped and torn down together.

In the spirit of superqt's ``new_worker_qthread``: create the QThread, move the worker to
it, run the worker's ``run`` slot when the thread starts, quit the thread when the worker
says it is done, and wait for the thread before anything is let go. Both the traversal
worker (:mod:`trav_gui.qt.worker`) and the one-shot background jobs (:mod:`trav_gui.qt.jobs`)
run through :class:`WorkerThread`, so there is one way to start a thread and one way to end
it: :meth:`WorkerThread.stop_and_wait`, which returns only once the thread has ended.

Why not superqt's own helpers: its function workers run on ``QThreadPool`` threads, which
cannot be waited for one by one when the window closes, and the tests fail any test that
leaves a thread running.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QThread, Signal, SignalInstance, Slot

__all__ = ["WorkerThread"]

# Every WorkerThread whose thread was started and not yet waited for. A QThread object must not
# be destroyed before wait() has returned: its thread may still be finishing (deleting the worker)
# after isRunning() turned False, and destroying the object then crashes that thread. Holding the
# WorkerThread here until it has waited means no caller can drop it too early.
_UNWAITED: set["WorkerThread"] = set()


class WorkerThread(QObject):
    """Run ``worker.run()`` in a QThread of its own, named ``name``.

    Parameters
    ----------
    worker : a QObject with a ``run()`` slot that does the work and returns, and a
        ``stop()`` method, safe to call from the GUI thread, that makes ``run`` return soon
        (within one step, at the next progress report).
    name : the thread's name (shown by debuggers and by the tests' thread-leak check).
    done : the worker's signal emitted last in ``run``; it quits the thread.
    parent : the owner of this object (the worker itself has none: it moves to the thread).

    Signals
    -------
    thread_finished() : the thread has ended and been waited for; this object may be dropped.
    """

    thread_finished = Signal()

    def __init__(self, worker: QObject, name: str, done: SignalInstance, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        # No parent and no deleteLater: the thread object must stay valid for isRunning()
        # and wait() until the Python side lets it go.
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.run)
        done.connect(self.thread.quit)
        # The worker is not deleteLater()'d in its thread: a Python object's destructor needs the
        # GIL, and run in the ending thread it deadlocked (or crashed) against the GUI thread
        # holding the GIL in moveToThread (seen in CI). Python deletes it, in the GUI thread, once
        # this object lets it go, after the thread has been waited for.
        self.thread.finished.connect(self._on_thread_finished)

    def start(self) -> None:
        _UNWAITED.add(self)
        self.thread.start()

    def stop(self) -> None:
        """Ask the worker to end; returns at once (the thread ends shortly after)."""
        self.worker.stop()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def stop_and_wait(self) -> None:
        """Stop the worker and block until its thread has ended: no thread is left running.

        The thread is quit here too, not only by ``done``: that signal is queued to this
        (blocked) thread and would come too late.
        """
        self.worker.stop()
        self.thread.quit()
        self.thread.wait()
        _UNWAITED.discard(self)

    @Slot()
    def _on_thread_finished(self) -> None:
        self.thread.wait()  # "finished" is emitted just before the thread really ends
        _UNWAITED.discard(self)
        self.thread_finished.emit()
