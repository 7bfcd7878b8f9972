"""The list of available models, each with its card's accuracies; ticks choose the columns."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QGroupBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from trav_gui.engine.data.datasets import DEFAULT_DATASET
from trav_gui.engine.models.card import ModelCard, ModelEntry, headline_label
from trav_gui.engine.models.loading import list_models

__all__ = ["MAX_MODELS", "ModelSelector", "card_tooltip", "describe_card"]

MAX_MODELS = 4
_KEY_ROLE = Qt.ItemDataRole.UserRole


def describe_card(card: ModelCard) -> str:
    """One line of a card's measured accuracy: clean, and the strongest attack's robust figure."""
    ev = card.evaluation
    parts = []
    if ev.clean_accuracy is not None:
        parts.append(f"clean {100 * ev.clean_accuracy:.1f}%")
    r = card.robust_headline()
    if r is not None:
        parts.append(f"robust {100 * r.accuracy:.1f}% (L2 ε {r.eps}, {headline_label(r)})")
    if card.kind == "recipe":
        parts.insert(0, "recipe")
        if ev.realism_success is not None:
            parts.append(f"realistic {percent(ev.realism_success)} of traversals")
    return " · ".join(parts) if parts else "no accuracy on its card"


def percent(fraction: float) -> str:
    """A measured fraction as a whole percent, with one decimal where rounding would claim a
    figure that was not measured (99.6 % is not "100%", 0.3 % is not "0%")."""
    value = 100 * fraction
    whole = round(value)
    if whole in (0, 100) and value != whole:
        tenths = round(value, 1)
        if tenths in (0, 100):  # 99.95 % is "99.9%", 0.04 % is "0.1%"
            tenths = math.floor(10 * value) / 10 if whole == 100 else math.ceil(10 * value) / 10
        return f"{tenths:.1f}%"
    return f"{whole:.0f}%"


def _realism_lines(realism: dict) -> list[str]:
    """A recipe's measured realism, what a user weighs one recipe against another by."""
    lines = []
    if "success" in realism:
        last = realism.get("success_last_by_judge", {}).get("judge")
        lines.append(f"success {percent(realism['success'])} at the confident point"
                     + (f", {percent(last)} at the endpoint" if last is not None else "")
                     + f" ({realism.get('traversals', '?')} traversals"
                     + (f" of {realism['steps']} steps" if "steps" in realism else "")
                     + (f"; real images {percent(realism['ceiling'])})" if "ceiling" in realism else ")"))
    seeds = realism.get("two_sample_last_seeds") or []
    if len(seeds) > 1:  # the test trains small networks: its mean over seeds, not one draw
        lines.append(f"endpoints told from real images {percent(sum(seeds) / len(seeds))} of the time "
                     f"(two-sample test, mean of {len(seeds)} seeds; 50% = indistinguishable)")
    elif "two_sample_last" in realism:
        lines.append(f"endpoints told from real images {percent(realism['two_sample_last'])} of the time "
                     "(two-sample test; 50% = indistinguishable)")
    if "ssim" in realism:
        lines.append(f"SSIM to the start at the confident point {realism['ssim']:.2f} (how much of the start is kept)")
    lines += _by_start_class(realism.get("success_map") or {})
    return lines


def _by_start_class(success_map: dict) -> list[str]:
    """The success map's range by start class, at the endpoint (what the user is left with) where the
    card has it, and at the confident point, each with its weakest start class."""
    def span(by_class: dict) -> str:
        worst = min(by_class, key=by_class.get)
        return (f"{percent(min(by_class.values()))[:-1]}–{percent(max(by_class.values()))} "
                f"(weakest: start class {worst})")
    last, confident = success_map.get("by_start_class_last"), success_map.get("by_start_class")
    if last:
        return [f"by start class {span(last)} at the endpoint"
                + (f", {span(confident)} at the confident point" if confident else "")]
    return [f"by start class {span(confident)}"] if confident else []


def card_tooltip(entry: ModelEntry) -> str:
    """A model's tooltip: what it is (its card's description) and what was measured of it."""
    card = entry.card
    tip = [entry.key, f"data set: {entry.dataset}", f"kind: {card.kind or '?'}"]
    if card.description:
        tip += textwrap.wrap(card.description, 90)
    tip += [f"robust {100 * r.accuracy:.1f}% at ε {r.eps} ({r.attack})" for r in card.evaluation.robust]
    tip += _realism_lines(card.evaluation.realism)
    tip.append(f"sha256: {card.sha256 or '?'}")
    return "\n".join(tip)


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
        self._entries: dict[str, ModelEntry] = {}
        self.dataset = DEFAULT_DATASET
        self.list.itemChanged.connect(self._on_item_changed)

    def add_entry(self, entry: ModelEntry, checked: bool = False) -> None:
        """Add a model; one already listed (the same :attr:`~ModelEntry.key`) is kept."""
        if entry.key in self._entries:
            return
        self._entries[entry.key] = entry
        card = entry.card
        item = QListWidgetItem(f"{entry.name} — {describe_card(card)}")
        item.setData(_KEY_ROLE, entry.key)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setToolTip(card_tooltip(entry))
        with QSignalBlocker(self.list):
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.list.addItem(item)
            item.setHidden(entry.dataset != self.dataset)

    def populate(self, folder: str | Path) -> None:
        """List every model with a card in ``folder`` (nothing ticked: see :meth:`show_dataset`)."""
        try:
            entries = list_models(folder)
        except OSError:
            entries = []
        for entry in entries:
            if not entry.card.is_judge:  # judges judge; they are never traversed
                self.add_entry(entry, checked=False)

    def show_dataset(self, dataset: str, default_names: Sequence[str] = ()) -> None:
        """Offer only the models of ``dataset``; tick ``default_names`` (else its first two)."""
        self.dataset = dataset
        ours = [e for e in self.entries(visible_only=False) if e.dataset == dataset]
        names = [e.name for e in ours]
        default = {n for n in default_names if n in names} or set(names[:2])
        with QSignalBlocker(self.list):
            for it in self._items():
                it.setHidden(self._entries[it.data(_KEY_ROLE)].dataset != dataset)
                if it.isHidden():
                    it.setCheckState(Qt.CheckState.Unchecked)
        self.set_selected([e.key for e in ours if e.name in default])

    def add_and_tick(self, entry: ModelEntry) -> None:
        """List ``entry`` and tick it too if fewer than :data:`MAX_MODELS` are ticked."""
        room = len(self.selected_entries()) < MAX_MODELS and entry.dataset == self.dataset
        self.add_entry(entry, checked=False)
        if room:
            self.set_selected([e.key for e in self.selected_entries()] + [entry.key])

    def _items(self) -> list[QListWidgetItem]:
        return [self.list.item(i) for i in range(self.list.count())]

    def selected_entries(self) -> list[ModelEntry]:
        """The ticked models, in list order."""
        return [self._entries[it.data(_KEY_ROLE)] for it in self._items()
                if it.checkState() == Qt.CheckState.Checked]

    def entries(self, visible_only: bool = True) -> list[ModelEntry]:
        """The listed models (those of the data set shown, unless ``visible_only`` is False)."""
        return [self._entries[it.data(_KEY_ROLE)] for it in self._items()
                if not (visible_only and it.isHidden())]

    def set_selected(self, keys: list[str]) -> None:
        """Tick exactly the models with these :attr:`~ModelEntry.key` s (emits ``selection_changed`` once)."""
        wanted = set(keys)
        with QSignalBlocker(self.list):
            for it in self._items():
                it.setCheckState(Qt.CheckState.Checked if it.data(_KEY_ROLE) in wanted
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
