"""Ten buttons to choose the target class; the start's predicted class is marked."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QButtonGroup, QGridLayout, QGroupBox, QLabel, QPushButton, QWidget

__all__ = ["TargetPicker"]

_MARKED = "QPushButton { border: 2px solid #ffb74d; font-weight: bold; }"
# The chosen target must read at a glance, whatever the platform style draws for "checked".
_CHECKED = "QPushButton:checked { background: #2e7d32; color: white; font-weight: bold; }"


class TargetPicker(QGroupBox):
    """Target class buttons 0–9 (the window maps keys 0–9 onto them).

    Signals
    -------
    target_changed(int) : the user chose another target.
    """

    target_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Target class (keys 0–9)", parent)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: list[QPushButton] = []
        self._grid = grid = QGridLayout(self)
        grid.setSpacing(3)
        self.class_names = [str(c) for c in range(10)]
        for c in range(10):
            b = QPushButton(str(c))
            b.setCheckable(True)
            b.setMinimumWidth(30)
            b.setStyleSheet(_CHECKED)
            self.group.addButton(b, c)
            self.buttons.append(b)
            grid.addWidget(b, 0, c)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        grid.addWidget(self.hint, 1, 0, 1, 10)
        self.buttons[0].setChecked(True)
        self.group.idClicked.connect(self.target_changed)

    def set_class_names(self, names, short_names) -> None:
        """Label the buttons with a data set's classes (two rows of five for long names)."""
        self.class_names = list(names)
        wide = max(len(n) for n in short_names) > 2
        for c, b in enumerate(self.buttons):
            b.setText(short_names[c])
            b.setToolTip(f"{c}: {names[c]}")
            self._grid.addWidget(b, c // 5 if wide else 0, c % 5 if wide else c)
        self._grid.addWidget(self.hint, 2, 0, 1, 10)

    @property
    def target(self) -> int:
        return self.group.checkedId()

    def set_target(self, target: int) -> None:
        """Check ``target``'s button without emitting ``target_changed``."""
        with QSignalBlocker(self.group):
            self.buttons[int(target)].setChecked(True)

    def mark_predicted(self, predictions: dict[str, int]) -> None:
        """Outline the class(es) the models predict for the start image; ``{model: class}``."""
        by_class: dict[int, list[str]] = {}
        for name, c in predictions.items():
            by_class.setdefault(int(c), []).append(name)
        for c, b in enumerate(self.buttons):
            b.setStyleSheet(_CHECKED + (_MARKED if c in by_class else ""))
            b.setProperty("predicted", c in by_class)
            b.setToolTip(f"predicted for the start by {', '.join(by_class[c])}" if c in by_class else "")
        if by_class:
            parts = [f"{', '.join(names)} → {self.class_names[c]}" for c, names in sorted(by_class.items())]
            self.hint.setText("Start predicted (outlined): " + "; ".join(parts))
        else:
            self.hint.setText("")

    @property
    def marked(self) -> list[int]:
        """The classes currently marked as predicted."""
        return [c for c, b in enumerate(self.buttons) if b.property("predicted")]
