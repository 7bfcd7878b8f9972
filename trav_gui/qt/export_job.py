"""Export a run in the background: a QThread worker around :func:`engine.export.export_run`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from trav_gui.engine.export import ExportCancelled, export_run

__all__ = ["ExportJob"]


class _ExportWorker(QObject):
    progress = Signal(int, int, str)
    export_finished = Signal(str)
    export_failed = Signal(str)

    def __init__(self, folder: Path, record: dict, arrays: Mapping[str, np.ndarray],
                 model_names: Sequence[str]) -> None:
        super().__init__()
        self._folder, self._record, self._arrays = folder, record, arrays
        self._names = list(model_names)
        self.cancelled = threading.Event()

    @Slot()
    def run(self) -> None:
        try:
            export_run(self._folder, self._record, self._arrays, self._names,
                       progress=self.progress.emit, cancel=self.cancelled.is_set)
        except ExportCancelled:
            self.export_failed.emit("export cancelled; the files already written are complete")
        except OSError as exc:
            self.export_failed.emit(
                f"could not export into {self._folder}: {exc.strerror or exc}. Nothing half-written is left "
                f"and {self._folder} has no run.json. The run is still here: free some space or "
                "choose another folder, and export again.")
        except Exception as exc:  # noqa: BLE001 - reported in a dialog, not lost in a thread
            self.export_failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.export_finished.emit(str(self._folder))


class ExportJob(QObject):
    """One export in its own QThread.

    Signals
    -------
    progress(done, total, what)
    export_finished(folder)
    export_failed(message)
    thread_finished() : the thread has ended; the job can be dropped.
    """

    progress = Signal(int, int, str)
    export_finished = Signal(str)
    export_failed = Signal(str)
    thread_finished = Signal()

    def __init__(self, folder: str | Path, record: dict, arrays: Mapping[str, np.ndarray],
                 model_names: Sequence[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self.worker = _ExportWorker(self.folder, record, arrays, model_names)
        self.thread = QThread()
        self.thread.setObjectName("export")
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self.progress)
        self.worker.export_finished.connect(self.export_finished)
        self.worker.export_failed.connect(self.export_failed)
        self.worker.export_finished.connect(self.thread.quit)
        self.worker.export_failed.connect(self.thread.quit)
        self.thread.finished.connect(self.thread_finished)

    def start(self) -> None:
        self.thread.start()

    def cancel(self) -> None:
        self.worker.cancelled.set()

    def is_running(self) -> bool:
        return self.thread.isRunning()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Cancel and block until the thread has ended; True if it did."""
        self.cancel()
        self.thread.quit()
        return self.thread.wait(timeout_ms)
