"""The main window's menus, keyboard shortcuts and error dialogs."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QMessageBox, QWidget

__all__ = ["WindowActions", "open_error_dialog"]


def open_error_dialog(parent, title: str, message: str, previous: QMessageBox | None) -> QMessageBox:
    """Show a window-modal warning without blocking the event loop (closing ``previous``)."""
    if previous is not None:
        previous.close()
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    box.open()
    return box


class WindowActions(QObject):
    """The window's menu and keyboard actions, in the File and Run menus of ``menu_bar``.

    The owner connects each action's ``triggered``; the actions are also added to ``parent``
    so that their shortcuts work anywhere in it. Space, →, R, Esc and 0–9 work anywhere in
    the window: the transport and target buttons take no keyboard focus.

    Attributes
    ----------
    add_model, open_run, export, quit : the File menu.
    play, step, reset, stop, jump, realism : the Run menu (``realism`` is a checked toggle);
        ``run_menu`` itself (the window adds its Device submenu).
    targets : ten actions, keys 0–9, one per target class.

    Signals
    -------
    target_chosen(target) : one of ``targets`` was triggered.
    """

    target_chosen = Signal(int)

    def __init__(self, menu_bar: QMenuBar, parent: QWidget) -> None:
        super().__init__(parent)
        self._parent = parent
        file_menu = menu_bar.addMenu("&File")
        self.add_model = self._action("Add model…", "Ctrl+M", file_menu)
        self.open_run = self._action("Open run…", QKeySequence.StandardKey.Open, file_menu)
        self.export = self._action("Export…", "Ctrl+E", file_menu)
        file_menu.addSeparator()
        self.quit = self._action("Quit", QKeySequence.StandardKey.Quit, file_menu)

        run_menu = self.run_menu = menu_bar.addMenu("&Run")
        self.play = self._action("Play / pause", Qt.Key.Key_Space, run_menu)
        self.step = self._action("Step", Qt.Key.Key_Right, run_menu)
        self.reset = self._action("Reset to start", Qt.Key.Key_R, run_menu)
        self.stop = self._action("Stop", Qt.Key.Key_Escape, run_menu)
        self.jump = self._action("Jump to the most realistic step", Qt.Key.Key_M, run_menu)
        self.realism = self._action("Judge and nearest real image (realism)", None, run_menu)
        self.realism.setCheckable(True)
        self.realism.setChecked(True)
        self.targets = [self._action(f"Target {c}", str(c)) for c in range(10)]
        for c, action in enumerate(self.targets):
            action.triggered.connect(lambda _=False, c=c: self.target_chosen.emit(c))

    def _action(self, text: str, shortcut=None, menu: QMenu | None = None) -> QAction:
        a = QAction(text, self._parent)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        if menu is not None:
            menu.addAction(a)
        self._parent.addAction(a)
        return a
