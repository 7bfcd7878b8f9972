"""Exports of the run on screen, one at a time, in the background, with progress in the status bar.

The work is :func:`trav_gui.engine.output.export.export_run` in a :class:`~trav_gui.qt.jobs.BackgroundJob`;
this module holds what the window needs around it: the progress bar and its cancel button,
the messages for a failed export, and the "idle" signal the window waits for before closing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressBar, QStatusBar, QToolButton

from trav_gui.engine.output.export import ExportCancelled, export_run
from trav_gui.qt.jobs import BackgroundJob

__all__ = ["Exporter"]


def _export_error(folder: Path):
    def describe(exc: BaseException) -> str:
        if isinstance(exc, ExportCancelled):
            return "cancelled"
        if isinstance(exc, OSError):
            return (f"could not export into {folder}: {exc.strerror or exc}. Nothing half-written is "
                    f"left and {folder} has no run.json. The run is still here: free some space or "
                    "choose another folder, and export again.")
        return f"{type(exc).__name__}: {exc}"
    return describe


class Exporter(QObject):
    """Runs exports one at a time; shows progress and a cancel button in ``status_bar``.

    Signals
    -------
    export_finished(folder)
    export_failed(message)
    idle() : the export's thread has ended (finished, failed or cancelled).
    """

    export_finished = Signal(str)
    export_failed = Signal(str)
    idle = Signal()

    def __init__(self, status_bar: QStatusBar, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bar = status_bar
        self.job: BackgroundJob | None = None
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel export")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        status_bar.addPermanentWidget(self.progress)
        status_bar.addPermanentWidget(self.cancel_button)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, folder: str | Path, record: dict, arrays: Mapping[str, np.ndarray],
              model_names: Sequence[str], scorer=None) -> bool:
        """Export into ``folder`` in the background; False if an export is already running.

        With a realism ``scorer``, the frames the judge did not see live are judged first, in
        the export's thread, so that the exported ``judge_probs`` are complete."""
        if self.job is not None:
            return False
        folder = Path(folder)
        names = list(model_names)
        def work(progress, cancelled):
            if scorer is not None:
                progress(0, 0, "judging the frames")
                scorer.fill_judge(arrays)
            return export_run(folder, record, arrays, names, progress=progress, cancel=cancelled)

        job = BackgroundJob("export", work, _export_error(folder), self)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(lambda _written: self._on_finished(folder))
        job.failed.connect(self._on_failed)
        job.thread_finished.connect(self._on_thread_finished)
        self.job = job
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        job.start()
        self._bar.showMessage(f"exporting to {folder}…")
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait(self) -> None:
        """Cancel a running export and block until its thread has ended."""
        if self.job is not None:
            self.job.stop_and_wait()

    def _on_progress(self, done: int, total: int, what: str) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.progress.setFormat(f"export %p% ({what})")

    def _on_finished(self, folder: Path) -> None:
        self._bar.showMessage(f"exported the run to {folder}", 8000)
        self.export_finished.emit(str(folder))

    def _on_failed(self, message: str) -> None:
        if message == "cancelled":
            message = "export cancelled; the files already written are complete"
        self.export_failed.emit(message)

    def _on_thread_finished(self) -> None:
        job, self.job = self.job, None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if job is not None:
            job.deleteLater()
        self.idle.emit()
