"""The main window's menus, keyboard shortcuts and error dialogs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMessageBox

__all__ = ["build_menus", "open_error_dialog"]


def open_error_dialog(parent, title: str, message: str, previous: QMessageBox | None) -> QMessageBox:
    """Show a window-modal warning without blocking the event loop (closing ``previous``)."""
    if previous is not None:
        previous.close()
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    box.open()
    return box


def build_menus(window) -> None:
    """Add the File and Run menus to ``window`` (a MainWindow) and keep its actions on it.

    Space, →, R, Esc and 0–9 work anywhere in the window: the transport buttons and target
    buttons take no keyboard focus, so the keys never go to a widget instead.
    """
    file_menu = window.menuBar().addMenu("&File")

    def action(text: str, slot, shortcut=None, menu=None) -> QAction:
        a = QAction(text, window)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        (menu or window).addAction(a)
        if menu is not None:
            window.addAction(a)
        return a

    window.add_model_action = action("Add model…", window.ask_add_model, "Ctrl+M", file_menu)
    window.open_run_action = action("Open run…", window.ask_open_run, QKeySequence.StandardKey.Open, file_menu)
    window.export_action = action("Export…", window.ask_export, "Ctrl+E", file_menu)
    file_menu.addSeparator()
    action("Quit", window.close, QKeySequence.StandardKey.Quit, file_menu)

    run_menu = window.menuBar().addMenu("&Run")
    window.play_action = action("Play / pause", window.toggle_play, Qt.Key.Key_Space, run_menu)
    window.step_action = action("Step", window.step_once, Qt.Key.Key_Right, run_menu)
    window.reset_action = action("Reset to start", window.reset, Qt.Key.Key_R, run_menu)
    window.stop_action = action("Stop", window.stop, Qt.Key.Key_Escape, run_menu)
    window.jump_action = action("Jump to the most realistic step", window.jump_to_most_realistic, Qt.Key.Key_M,
                                run_menu)
    window.realism_action = action("Judge and nearest real image (realism)", lambda _=False: None, None, run_menu)
    window.realism_action.setCheckable(True)
    window.realism_action.setChecked(True)
    window.target_actions = [
        action(f"Target {c}", lambda _=False, c=c: window.set_target(c), str(c)) for c in range(10)]
