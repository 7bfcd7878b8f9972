"""Adding models to the window: files through File → Add model…, in-memory models through ``trav_gui.show``.

A file is checked, measured and kept in the user models folder by the engine
(:func:`~trav_gui.engine.models.user_models.add_user_model`), so the window lists it again on every
start. An in-memory model gets an entry with no path and a card of its own holding the sha256 of its
state dict, so run records made with it name it like any other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog
from torch import nn

from trav_gui.engine.models.accuracy import clean_accuracy
from trav_gui.engine.models.card import ModelCard, ModelEntry
from trav_gui.engine.models.errors import ModelLoadError, UserModelError
from trav_gui.engine.models.user_models import accuracy_warning, add_user_model
from trav_gui.engine.models.weights import state_sha256
from trav_gui.qt.model_selector import MAX_MODELS

__all__ = ["FILE_FILTER", "add_memory_models", "add_model_file", "ask_add_model", "memory_entry"]

FILE_FILTER = ("models (*.safetensors *.onnx *.recipe);;safetensors weights (*.safetensors);;ONNX graphs (*.onnx);;"
               "recipes (*.recipe);;All files (*)")


def add_model_file(window, path: str | Path) -> bool:
    """Check, measure and keep a ``.safetensors`` or ``.onnx`` file among the user models, list it
    and tick it if there is room; False (after an error dialog) if it is refused."""
    QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        entry, model = add_user_model(path, device=window.device, rename=True)
    except (ModelLoadError, UserModelError) as exc:
        window.show_error("Cannot add model", str(exc))
        return False
    finally:
        QApplication.restoreOverrideCursor()
    window.models.put(entry.key, model)
    window.selector.add_and_tick(entry)
    notes = [f"added model {entry.name} from {Path(path).name}, kept in {entry.path.parent}"]
    if entry.dataset != window.dataset:
        notes.append(f"a {entry.dataset} model: choose that data set to use it")
    warning = accuracy_warning(entry.card)
    if warning:
        notes.append(warning)
    window.statusBar().showMessage("; ".join(notes), 15_000)
    return True


def ask_add_model(window) -> None:
    """File → Add model…: pick a file and add it."""
    path, _ = QFileDialog.getOpenFileName(window, "Add model", str(Path.home()), FILE_FILTER)
    if path:
        add_model_file(window, path)


def memory_entry(name: str, model: nn.Module, dataset: str, device: str = "cpu") -> ModelEntry:
    """The entry that lists an in-memory model: its name, no path, and a card with its state dict's
    sha256 and its clean accuracy measured on the data set's shipped test set."""
    try:
        accuracy, samples = clean_accuracy(model, dataset, device)
        evaluation = {"clean_accuracy": accuracy, "clean_samples": samples}
    except (OSError, ValueError, RuntimeError):  # no shipped test set, or a model that fails on a batch
        evaluation = {}
    card = ModelCard(name=name, kind="in-memory", dataset=dataset, sha256=state_sha256(model), evaluation=evaluation)
    return ModelEntry(name, None, "memory", card)


def add_memory_models(window, models: Mapping[str, nn.Module], dataset: str) -> list[ModelEntry]:
    """List ``models`` in ``window`` and tick the first :data:`MAX_MODELS` of them (only them)."""
    entries = []
    for name, model in models.items():
        entry = memory_entry(name, model, dataset, window.device)
        window.models.put(entry.key, model)
        window.selector.add_entry(entry)
        entries.append(entry)
    if entries:
        window.selector.set_selected([e.key for e in entries[:MAX_MODELS]])
    return entries
