"""The list of available models, each with its card's accuracies; ticks choose the columns."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QGroupBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from trav_gui.engine.models.card import card_dataset, is_judge, robust_headline
from trav_gui.engine.models.loading import list_models

__all__ = ["MAX_MODELS", "ModelSelector", "describe_card"]

MAX_MODELS = 4
_PATH_ROLE = Qt.ItemDataRole.UserRole


def describe_card(card: dict) -> str:
    """One line of a card's measured accuracy: clean, and the strongest attack's robust figure."""
    ev = card.get("evaluation") or {}
    parts = []
    if isinstance(ev.get("clean_accuracy"), (int, float)):
        parts.append(f"clean {100 * ev['clean_accuracy']:.1f}%")
    r = robust_headline(card)
    if r is not None:
        parts.append(f"robust {100 * r['accuracy']:.1f}% (L2 ε {r['eps']}, {r['short']})")
    realism = (ev.get("realism") or {}).get("success")
    if card.get("kind") == "recipe":
        parts.insert(0, "recipe")
        if isinstance(realism, (int, float)):
            parts.append(f"realistic {100 * realism:.0f}% of traversals")
    return " · ".join(parts) if parts else "no accuracy on its card"


class ModelSelector(QGroupBox):
    """Checkable model list; between one and :data:`MAX_MODELS` models stay ticked.

    Signals
    -------
    selection_changed() : the ticked models changed.
    """

    selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(f"Models (tick 1–{MAX_MODELS} to compare)", parent)
        self.list = QListWidget()
        self.list.setMaximumHeight(96)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.note)
        self._cards: dict[str, dict] = {}
        self.dataset = "mnist"
        self.list.itemChanged.connect(self._on_item_changed)

    def add_card(self, card: dict, checked: bool = False) -> None:
        """Add a model (a card dict with ``name`` and ``path``); an already listed path is kept."""
        path = card["path"]
        if path in self._cards:
            return
        self._cards[path] = card
        item = QListWidgetItem(f"{card['name']} — {describe_card(card)}")
        item.setData(_PATH_ROLE, path)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        tip = [path, f"data set: {card_dataset(card)}", f"kind: {card.get('kind', '?')}", f"sha256: {card.get('sha256', '?')}"]
        for r in (card.get("evaluation") or {}).get("robust") or []:
            if isinstance(r, dict):
                tip.append(f"robust {100 * r.get('accuracy', float('nan')):.1f}% at ε {r.get('eps')} "
                           f"({r.get('attack')})")
        item.setToolTip("\n".join(tip))
        with QSignalBlocker(self.list):
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.list.addItem(item)
            item.setHidden(card_dataset(card) != self.dataset)

    def populate(self, folder: str | Path) -> None:
        """List every model with a card in ``folder`` (nothing ticked: see :meth:`show_dataset`)."""
        try:
            cards = list_models(folder)
        except OSError:
            cards = []
        for card in cards:
            if not is_judge(card):  # judges judge; they are never traversed
                self.add_card(card, checked=False)

    def show_dataset(self, dataset: str, default_names: Sequence[str] = ()) -> None:
        """Offer only the models of ``dataset``; tick ``default_names`` (else its first two)."""
        self.dataset = dataset
        ours = [c for c in self.cards(visible_only=False) if card_dataset(c) == dataset]
        names = [c["name"] for c in ours]
        default = {n for n in default_names if n in names} or set(names[:2])
        with QSignalBlocker(self.list):
            for it in self._items():
                card = self._cards[it.data(_PATH_ROLE)]
                it.setHidden(card_dataset(card) != dataset)
                if it.isHidden():
                    it.setCheckState(Qt.CheckState.Unchecked)
        self.set_selected([c["path"] for c in ours if c["name"] in default])

    def add_and_tick(self, card: dict) -> None:
        """List ``card`` and tick it too if fewer than :data:`MAX_MODELS` are ticked."""
        room = len(self.selected_cards()) < MAX_MODELS and card_dataset(card) == self.dataset
        self.add_card(card, checked=False)
        if room:
            self.set_selected([c["path"] for c in self.selected_cards()] + [card["path"]])

    def _items(self) -> list[QListWidgetItem]:
        return [self.list.item(i) for i in range(self.list.count())]

    def selected_cards(self) -> list[dict]:
        """The ticked models' cards, in list order."""
        return [self._cards[it.data(_PATH_ROLE)] for it in self._items()
                if it.checkState() == Qt.CheckState.Checked]

    def cards(self, visible_only: bool = True) -> list[dict]:
        """The listed models' cards (those of the data set shown, unless ``visible_only`` is False)."""
        return [self._cards[it.data(_PATH_ROLE)] for it in self._items()
                if not (visible_only and it.isHidden())]

    def set_selected(self, paths: list[str]) -> None:
        """Tick exactly the models at ``paths`` (emits ``selection_changed`` once)."""
        wanted = set(paths)
        with QSignalBlocker(self.list):
            for it in self._items():
                it.setCheckState(Qt.CheckState.Checked if it.data(_PATH_ROLE) in wanted
                                 else Qt.CheckState.Unchecked)
        self.note.setText("")
        self.selection_changed.emit()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        ticked = [it for it in self._items() if it.checkState() == Qt.CheckState.Checked]
        if len(ticked) > MAX_MODELS:
            with QSignalBlocker(self.list):
                item.setCheckState(Qt.CheckState.Unchecked)
            self.note.setText(f"At most {MAX_MODELS} models side by side.")
            return
        if not ticked:
            with QSignalBlocker(self.list):
                item.setCheckState(Qt.CheckState.Checked)
            self.note.setText("At least one model must stay ticked.")
            return
        self.note.setText("")
        self.selection_changed.emit()
