"""Choosing the target class: a button per class, or a searchable list for many classes; the
start's predicted class is marked."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QCompleter,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QWidget,
)

__all__ = ["MAX_BUTTONS", "TargetPicker"]

_MARKED = "QPushButton { border: 2px solid #ffb74d; font-weight: bold; }"
# The chosen target must read at a glance, whatever the platform style draws for "checked".
_CHECKED = "QPushButton:checked { background: #2e7d32; color: white; font-weight: bold; }"
# More classes than this get a searchable list instead of buttons.
MAX_BUTTONS = 12


class TargetPicker(QGroupBox):
    """Target class buttons (the window maps keys 0–9 onto the first ten), or, for more than
    :data:`MAX_BUTTONS` classes, a list to type a class name into.

    Signals
    -------
    target_changed(int) : the user chose another target.
    """

    target_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Target class (keys 0–9)", parent)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.group.idClicked.connect(self.target_changed)
        self.buttons: list[QPushButton] = []
        self._grid = QGridLayout(self)
        self._grid.setSpacing(3)
        self.search = QComboBox(self)
        self.search.hide()
        self.search.setEditable(True)
        self.search.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.search.setToolTip("Type to find a class")
        completer = self.search.completer()
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.search.currentIndexChanged.connect(self._on_search_chosen)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self._target = 0
        self._marked: set[int] = set()
        self.class_names: list[str] = []
        names = [str(c) for c in range(10)]
        self.set_class_names(names, names)

    @property
    def uses_list(self) -> bool:
        """True when the classes are offered as a searchable list rather than buttons."""
        return len(self.class_names) > MAX_BUTTONS

    def set_class_names(self, names, short_names) -> None:
        """Offer a data set's classes: a button each (two rows for long names or more than ten),
        or the searchable list beyond :data:`MAX_BUTTONS`. The target stays if the new classes
        have it, else it becomes class 0."""
        keep = self.target if self.class_names else 0
        self.class_names = list(names)
        for b in self.buttons:
            self.group.removeButton(b)
            b.deleteLater()
        self.buttons = []
        for i in reversed(range(self._grid.count())):
            self._grid.takeAt(i)
        k = len(self.class_names)
        keep = keep if 0 <= keep < k else 0
        self._target = keep
        self._marked = set()
        if self.uses_list:
            with QSignalBlocker(self.search):
                self.search.clear()
                for c, name in enumerate(self.class_names):
                    self.search.addItem(f"{c}: {name}", c)
                self.search.setCurrentIndex(keep)
            self._grid.addWidget(self.search, 0, 0)
            self._grid.addWidget(self.hint, 1, 0)
            self.search.show()
            return
        self.search.hide()
        wide = max(len(n) for n in short_names) > 2 or k > 10
        per_row = 5 if max(len(n) for n in short_names) > 2 else 6 if k > 10 else k
        for c in range(k):
            b = QPushButton(short_names[c])
            b.setCheckable(True)
            b.setMinimumWidth(30)
            b.setStyleSheet(_CHECKED)
            b.setToolTip(f"{c}: {names[c]}")
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.group.addButton(b, c)
            self.buttons.append(b)
            self._grid.addWidget(b, c // per_row if wide else 0, c % per_row if wide else c)
        self._grid.addWidget(self.hint, self._grid.rowCount(), 0, 1, max(per_row, 1))
        self.buttons[keep].setChecked(True)

    def _on_search_chosen(self, index: int) -> None:
        if index >= 0 and self.search.itemData(index) is not None:
            self._target = int(self.search.itemData(index))
            self.target_changed.emit(self._target)

    @property
    def target(self) -> int:
        return self._target if self.uses_list else self.group.checkedId()

    def set_target(self, target: int) -> None:
        """Choose ``target`` without emitting ``target_changed``."""
        target = int(target)
        if not 0 <= target < len(self.class_names):
            raise ValueError(f"target must be 0..{len(self.class_names) - 1}, got {target}")
        if self.uses_list:
            self._target = target
            with QSignalBlocker(self.search):
                self.search.setCurrentIndex(target)
            return
        with QSignalBlocker(self.group):
            self.buttons[target].setChecked(True)

    def mark_predicted(self, predictions: dict[str, int]) -> None:
        """Outline the class(es) the models predict for the start image; ``{model: class}``."""
        by_class: dict[int, list[str]] = {}
        for name, c in predictions.items():
            by_class.setdefault(int(c), []).append(name)
        self._marked = set(by_class)
        for c, b in enumerate(self.buttons):
            b.setStyleSheet(_CHECKED + (_MARKED if c in by_class else ""))
            b.setProperty("predicted", c in by_class)
            b.setToolTip(f"predicted for the start by {', '.join(by_class[c])}" if c in by_class
                         else f"{c}: {self.class_names[c]}")
        if by_class:
            parts = [f"{', '.join(names)} → {self.class_names[c]}" for c, names in sorted(by_class.items())]
            self.hint.setText(("Start predicted: " if self.uses_list else "Start predicted (outlined): ")
                              + "; ".join(parts))
        else:
            self.hint.setText("")

    @property
    def marked(self) -> list[int]:
        """The classes currently marked as predicted."""
        return sorted(self._marked)
