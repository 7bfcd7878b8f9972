"""Scrolling a panel does not change the settings it scrolls past.

On a laptop the left panel scrolls, and a wheel turn over a spin box or a drop-down under the
pointer would change its value (the seed, the norm) instead of scrolling. :func:`guard_wheel`
makes those widgets take the wheel only once clicked or tabbed into; until then their wheel
events go on to the panel, which scrolls.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QWidget

__all__ = ["WheelGuard", "guard_wheel"]


class WheelGuard(QObject):
    """An event filter: a wheel event on an unfocused widget is left to its parents."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            # Filtered away from the widget but not accepted: Qt hands it on to the parents.
            event.ignore()
            return True
        return False


def guard_wheel(container: QWidget) -> WheelGuard:
    """Guard every spin box and drop-down inside ``container``; returns the guard (owned by it)."""
    guard = WheelGuard(container)
    for widget in [*container.findChildren(QAbstractSpinBox), *container.findChildren(QComboBox)]:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel alone does not focus it
        widget.installEventFilter(guard)
    return guard
