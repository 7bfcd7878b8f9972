"""The window's export and replay: the run on screen as a run record and an export folder, and a
run record opened and replayed. A mixin of :class:`~trav_gui.qt.window.MainWindow`, kept apart so
that the window stays layout and wiring."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from trav_gui.engine.runs.record import RunRecordError, read_run_record
from trav_gui.engine.runs.replay import ReplayError, match_record_models
from trav_gui.qt.model_selector import MAX_MODELS
from trav_gui.qt.settings_panel import MAX_UI_STEPS

__all__ = ["RunFilesMixin"]


class RunFilesMixin:
    """Export the run on screen, open a run record and replay it (needs MainWindow's parts)."""

    def current_record(self) -> dict:
        """The run record of the run on screen (raises RuntimeError if there is none)."""
        context, h = self.runs.context, self.history
        if context is None or h is None or len(h) == 0:
            raise RuntimeError("there is no run to export: press Play first")
        extra = {"device": self.device, "status": self.runs.status, "dataset": self.dataset}
        return context.record(h, self.models.sha256, extra)

    def export_to(self, folder: str | Path) -> bool:
        """Export the run on screen into ``folder`` in the background; False if not started."""
        if self.exporter.busy:
            self.show_error("Export busy", "An export is already running.")
            return False
        try:
            record = self.current_record()
        except RuntimeError as exc:
            self.show_error("Nothing to export", str(exc))
            return False
        scorer = self.scorers.get(self.dataset) if self.history.has_realism else None
        return self.exporter.start(folder, record, self.history.stacked(), self.runs.context.names, scorer)

    def ask_export(self) -> None:
        if self.history is None or len(self.history) == 0:
            self.show_error("Nothing to export", "There is no run to export: press Play first.")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the run into folder")
        if folder:
            self.export_to(folder)

    def _on_export_failed(self, message: str) -> None:
        self.show_error("Export failed", message)
        self.export_failed.emit(message)

    def _on_export_idle(self) -> None:
        if self._close_after_export:
            self._close_after_export = False
            self.close()

    def open_run_file(self, path: str | Path, play: bool = True) -> bool:
        """Load a run record and replay the identical run; False (with a dialog) on error."""
        try:  # all checked before leaving the run on screen: a refused file changes nothing
            record = read_run_record(path)
            entries = match_record_models(record, self.selector.entries(visible_only=False), self.models.sha256,
                                        MAX_MODELS, MAX_UI_STEPS)
        except (RunRecordError, ReplayError) as exc:
            self.show_error(getattr(exc, "title", "Cannot open run"), str(exc))
            return False
        if entries[0].dataset != self.dataset:
            self.set_dataset(entries[0].dataset)
        self._leave_run()
        exact = self.settings.set_config(record.config)
        self._replay_config = None if exact else record.config
        self.selector.set_selected([e.key for e in entries])
        self.target_picker.set_target(record.target)
        self.input_panel.set_start_image(record.start_image, record.test_index)
        self.statusBar().showMessage(f"opened run {Path(path)} (made {record.created})", 8000)
        return self.play() if play else True

    def ask_open_run(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run record", "",
                                              "run records (run.json *.json);;All files (*)")
        if path:
            self.open_run_file(path)

