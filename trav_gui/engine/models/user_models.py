"""The user's own models: a per-user folder that ``trav-gui models add`` and File → Add model… fill.

Adding a model checks it exactly as loading does (:func:`~trav_gui.engine.models.load_model`:
safetensors with a card, or ONNX compared with onnxruntime), measures its clean accuracy on
the shipped test set of its data set, and keeps a copy with a card beside it, so that the app
lists it on every start and ``trav-gui traverse --model NAME`` finds it. The folder is
``platformdirs.user_data_dir("trav-gui")/models`` (``~/.local/share/trav-gui/models`` on
Linux), or ``$TRAV_GUI_USER_MODELS``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from trav_gui import __version__
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.accuracy import clean_accuracy
from trav_gui.engine.models.card import (
    ModelCard,
    ModelEntry,
    card_path,
    parse_card,
    read_card,
)
from trav_gui.engine.models.conventions import conventions_from_card
from trav_gui.engine.models.errors import ModelLoadError, UserModelError
from trav_gui.engine.models.loading import list_models, load_model, load_onnx_as, model_sha256
from trav_gui.engine.models.onnx_detect import detect_onnx
from trav_gui.engine.models.onnx_model import self_contained_bytes
from trav_gui.engine.models.recipes import describe
from trav_gui.paths import models_dir, user_models_dir

__all__ = ["accuracy_warning", "add_user_model", "detected_summary", "list_user_models", "remove_user_model"]

NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Below this clean accuracy a model almost surely got its card wrong (or is untrained): say so.
SUSPICIOUS_ACCURACY = 0.5
# Card entries that belong to the file, not to what the model is; never copied from a user's card.
_FILE_ENTRIES = {"name", "path", "sha256", "weights", "role", "source"}


def list_user_models() -> list[ModelEntry]:
    """The user's models, by name."""
    folder = user_models_dir()
    return list_models(folder, source="user") if folder.is_dir() else []


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise UserModelError(f"model name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                             "starting with a letter or digit")
    return name


def _shipped_names() -> set[str]:
    return {e.name for e in list_models(models_dir())} if models_dir().is_dir() else set()


def _free_name(stem: str, taken: set[str]) -> str:
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    return name


def add_user_model(path: str | os.PathLike, name: str | None = None, device: str | torch.device = "cpu",
                   rename: bool = False) -> tuple[ModelEntry, nn.Module]:
    """Check a ``.safetensors``, ``.onnx`` or ``.recipe`` file, measure it and keep it in the user models folder.

    Parameters
    ----------
    path : the file (its card beside it, ``<stem>.json``, where one is needed; an ``.onnx`` file
        without one has its data set and conventions detected: :mod:`~trav_gui.engine.models.onnx_detect`).
    name : what to call it (default: the file's stem).
    device : where the accuracy is measured and the returned model lives.
    rename : when the name is taken by another model, use ``name-2``, ``name-3``... instead of
        refusing (what the app does; the command line refuses and says to pass ``--name``).

    Returns
    -------
    (entry, model) : the kept copy's listing entry (its card as written beside it, with
    ``evaluation.clean_accuracy`` as measured and ``sha256``) and the copy, loaded. A file whose
    weights are already among the user models is not copied again: that model is returned.

    Raises
    ------
    ModelLoadError : the file is refused (the reasons of :func:`~trav_gui.engine.models.load_model`).
    UserModelError : a bad or taken name.
    """
    source = Path(path)
    recipe = source.suffix.lower() == ".recipe"
    onnx = source.suffix.lower() == ".onnx"
    detection = None
    if onnx and read_card(source, strict=True) is None:
        # No card: find the data set, input convention and output kind by measuring (or refuse,
        # with the table), then load exactly as a card saying so would.
        detection = detect_onnx(source)
        model = load_onnx_as(source, detection.conventions, detection.dataset, device)
    else:
        model = load_model(source, device=device)  # every check, before anything is written
    raw_card = read_card(source)
    card = raw_card or ModelCard()
    sha = model_sha256(source)
    for existing in list_user_models():
        if sha in (existing.card.sha256, existing.card.source_sha256):
            return existing, load_model(existing.path, device=device)
    wanted = _check_name(name if name is not None else re.sub(r"[^A-Za-z0-9_-]", "-", source.stem)[:64] or "model")
    shipped = _shipped_names()
    taken = shipped | {e.name for e in list_user_models()}
    if wanted in taken:
        if not rename:
            where = "a shipped model" if wanted in shipped else "another user model"
            raise UserModelError(f"the name {wanted!r} is taken by {where}; choose another with --name "
                                 f"(or remove it first: trav-gui models remove {wanted})")
        wanted = _free_name(wanted, taken)
    kind, description = card.kind, card.description
    if recipe:  # a recipe's models carry their own conventions; the card only describes it
        conventions, dataset, arch = None, model.dataset, None
        kind, description = "recipe", description or describe(model.recipe)
    elif detection is not None:
        conventions, dataset, arch = detection.conventions, detection.dataset, None
    else:
        arch = None if onnx else _architecture_of(source, card)
        conventions, dataset = conventions_from_card(raw_card, source.name, card_path(source).name, arch, onnx)
    accuracy, samples = clean_accuracy(model, dataset, device)
    evaluation = {**card.evaluation.model_dump(mode="json", exclude_unset=True), "clean_accuracy": accuracy,
                  "clean_samples": samples, "clean_measured_by": f"trav-gui {__version__} models add"}
    folder = user_models_dir()
    dest = folder / f"{wanted}{source.suffix.lower()}"
    kept = {k: v for k, v in card.to_json().items() if k not in _FILE_ENTRIES}
    new_card = {**kept, **({"architecture": arch} if arch else {}),
                **({"description": description} if description else {}), "kind": str(kind or "user")[:32],
                "dataset": dataset,
                **(conventions.to_card() if conventions else {}),
                **(detection.card_entries() if detection else {}),
                "evaluation": evaluation, "weights": dest.name, "source": str(source.resolve()),
                "source_sha256": sha, "added": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(dest, self_contained_bytes(source) if onnx else source.read_bytes())
        new_card["sha256"] = model_sha256(dest)
        typed = parse_card(new_card, dest)
        write_bytes_atomic(card_path(dest), (json.dumps(new_card, indent=2) + "\n").encode())
        stored = load_model(dest, device=device)
    except (OSError, ModelLoadError) as exc:
        for f in (dest, card_path(dest)):
            f.unlink(missing_ok=True)
        if isinstance(exc, ModelLoadError):
            raise
        raise UserModelError(f"cannot keep the model in {folder} ({exc})") from None
    return ModelEntry(wanted, dest, "user", typed), stored


def _architecture_of(source: Path, card: ModelCard) -> str:
    with safe_open(str(source), framework="pt") as f:
        metadata = f.metadata() or {}
    return metadata.get("architecture") or card.architecture or "small_cnn"


def remove_user_model(name: str) -> list[Path]:
    """Delete a user model (its weights and card); the files removed. Shipped models stay."""
    _check_name(name)
    folder = user_models_dir()
    files = [folder / f"{name}{ext}" for ext in (".safetensors", ".onnx", ".recipe", ".json")]
    present = [f for f in files if f.is_file() and not f.is_symlink()]
    if not any(f.suffix != ".json" for f in present):
        if name in _shipped_names():
            raise UserModelError(f"{name!r} is a shipped model; only models added with trav-gui models add "
                                 "can be removed")
        known = ", ".join(e.name for e in list_user_models()) or "none"
        raise UserModelError(f"no user model named {name!r} in {folder}; user models: {known}")
    for f in present:
        f.unlink()
    return present


def detected_summary(card: ModelCard) -> str | None:
    """'detected its input as ... (97.3 % right ...; then ...)' for a card written by detection, else None."""
    found = (card.model_extra or {}).get("input_detected")
    if not isinstance(found, dict) or not found.get("accuracies"):
        return None
    rows = [r for r in found["accuracies"] if r.get("dataset") == card.dataset]
    def said(r: dict) -> str:
        return f"{100 * r['accuracy']:.1f} % right, cross-entropy {r.get('cross_entropy', float('nan')):.3g}"

    best, rest = rows[0], "; ".join(f"{r['input']}: {said(r)}" for r in rows[1:4])
    return (f"no card: detected its input as {found['chosen']} and its output as {found['output']} "
            f"({said(best)} on {found['test_images']} {card.dataset} test images"
            + (f"; then {rest}" if rest else "") + "); the card written beside the kept copy says so")


def accuracy_warning(card: ModelCard) -> str | None:
    """A sentence when a model's measured clean accuracy is so low that its card is probably wrong."""
    accuracy = card.evaluation.clean_accuracy
    if accuracy is None or accuracy >= SUSPICIOUS_ACCURACY:
        return None
    return (f"its clean accuracy is only {100 * accuracy:.1f} % on the {card.dataset} test set: check the card's "
            "\"input\" (range, mean and std, layout), \"output\" and \"architecture\", and the data set")
