"""The window's device: where its models, its judge and its compute process run, chosen in
Run → Device and named in the status bar. A mixin of :class:`~trav_gui.qt.window.MainWindow`."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QLabel, QMenu

from trav_gui.engine.core.devices import available_devices, device_label
from trav_gui.engine.models.cache import ModelCache
from trav_gui.engine.realism import Scorers

__all__ = ["DeviceMixin"]


def _canonical(device: str) -> str:
    return "cuda:0" if device == "cuda" else device


class DeviceMixin:
    """Run → Device and the status bar's device (needs MainWindow's parts)."""

    def _build_device_menu(self, menu: QMenu) -> None:
        self.status_device = QLabel(f"device: {device_label(self.device)}")
        self.statusBar().addPermanentWidget(self.status_device)
        submenu = menu.addMenu("Device")
        group = QActionGroup(self)
        self.device_actions: dict[str, QAction] = {}
        current = _canonical(self.device)
        for device in dict.fromkeys([*available_devices(), current]):  # the window's own too, once
            action = QAction(f"{device_label(device)} [{device}]", self, checkable=True)
            action.setChecked(device == current)
            action.triggered.connect(lambda _=False, d=device: self.set_device(d))
            group.addAction(action)
            submenu.addAction(action)
            self.device_actions[device] = action

    def set_device(self, device: str) -> None:
        """Run on ``device`` from the next run on: the run on screen is left, models and the
        judge are loaded there on first use, and the compute process runs there."""
        if _canonical(device) == _canonical(self.device):
            return
        self._leave_run()
        self.device = device
        self.models = ModelCache(device)
        self.scorers = Scorers(device)
        if self.workers is not None:
            self.workers.device = device
        self.status_device.setText(f"device: {device_label(device)}")
        if _canonical(device) in self.device_actions:
            self.device_actions[_canonical(device)].setChecked(True)
        self._update_start_predictions()
