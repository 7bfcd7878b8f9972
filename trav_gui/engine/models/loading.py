"""Loading models by name or path: the one place that dispatches on a file's suffix.

``.safetensors`` (weights of a registered architecture, its card beside it), ``.onnx`` (a graph,
converted to torch: :mod:`trav_gui.engine.models.onnx_model`) and ``.recipe`` (a recipe whose
members are loaded here too: :mod:`trav_gui.engine.models.recipes`). Every model comes back in
eval mode, taking ``(N, 1, 28, 28)`` float32 pixels in [0, 1] and returning logits ``(N, 10)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from trav_gui.engine.files import sha256_of
from trav_gui.engine.data.datasets import DATASETS, DEFAULT_DATASET, get_dataset
from trav_gui.engine.models.architectures import ARCHITECTURE_LAYOUTS, ARCHITECTURES, build, fitting_architectures
from trav_gui.engine.models.card import (
    ModelCard,
    ModelEntry,
    Source,
    card_path,
    check_one_dataset,
    read_card,
    refuse_judges,
)
from trav_gui.engine.models.conventions import Conventions, adapt, conventions_from_card, missing_card_message
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.onnx_model import load_onnx, onnx_sha256
from trav_gui.engine.models.priors import load_prior
from trav_gui.engine.models.recipes import RECIPE_SUFFIX, Ensemble, Guided, Recipe, retry_note
from trav_gui.engine.models.weights import PICKLE_SUFFIXES, check_state, read_safetensors
from trav_gui.paths import models_dir, user_models_dir

__all__ = ["MAX_RECIPE_BYTES", "MODEL_SUFFIXES", "entry_of", "list_models", "load_model", "load_onnx_as", "load_recipe",
           "load_weights", "model_sha256", "read_recipe", "resolve_model_path", "retry_notes"]

MODEL_SUFFIXES = (".safetensors", ".onnx", RECIPE_SUFFIX)
MAX_RECIPE_BYTES = 1 << 16


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """Turn a model's name (shipped, such as ``"robust"``, or added to the user models) or a path
    into a file path."""
    text = os.fspath(name_or_path)
    suffix = Path(text).suffix.lower()
    if os.sep not in text and "/" not in text and suffix not in (*MODEL_SUFFIXES, *PICKLE_SUFFIXES):
        for folder in (models_dir(), user_models_dir()):
            for ext in MODEL_SUFFIXES:
                if (folder / f"{text}{ext}").exists():
                    return folder / f"{text}{ext}"
        known = ", ".join(sorted(p.stem for p in models_dir().glob("*.safetensors")))
        raise ModelLoadError(
            f"no model named {text!r}; shipped models: {known or 'none'} (trav-gui models lists the "
            "user models too); or give the path of a .safetensors, .onnx or .recipe file"
        )
    return Path(text)


def model_sha256(path: str | os.PathLike) -> str:
    """What identifies a model's weights in run records: the file's sha256, and for an ONNX
    graph with external data, the sha256 of the graph and its data files together."""
    if Path(path).suffix.lower() == ".onnx":
        return onnx_sha256(Path(path))
    return sha256_of(path)


def _refuse_card_for_other_weights(card: ModelCard | None, path: Path) -> None:
    if card is not None and card.sha256 and card.sha256 != model_sha256(path):
        raise ModelLoadError(
            f"{path.name}: its card {card_path(path).name} was written for other weights "
            "(sha256 differs); the card's accuracies would not describe this model"
        )


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a classifier in eval mode.

    Parameters
    ----------
    name_or_path : a shipped model's name (``"robust"``, ``"standard"``...), a user model's name
        (``trav-gui models add``), or the path of a ``.safetensors``, ``.onnx`` or ``.recipe`` file
        (a recipe, :mod:`trav_gui.engine.models.recipes`, loads as a :class:`~trav_gui.engine.models.recipes.Guided`
        model that takes its own steps). A
        ``.safetensors`` file's architecture comes from its metadata, else from its model card,
        else ``small_cnn``; an ``.onnx`` file is converted to torch (needs the ``onnx`` extra),
        see :mod:`trav_gui.engine.models.onnx_model`. Input and output conventions come from the card
        (:mod:`trav_gui.engine.models.conventions`).
    device : where to put the model.

    Returns
    -------
    torch.nn.Module taking ``(N, 1, 28, 28)`` float32 in [0, 1] and returning logits ``(N, 10)``
    (normalization, flattening and the log of probabilities happen inside, as the card says),
    with ``requires_grad`` off on its parameters (traversal differentiates the input only).
    Its 4-D (convolution) weights are stored channels-last, which makes a forward + backward
    pass on a CPU about 10 % faster, on one image as on 90 (see benchmarks/bench_speed.py);
    the values, and the input it takes, are unchanged.

    Raises
    ------
    ModelLoadError : for a pickle (refused, never unpickled), a missing, truncated or corrupt
        file, an unknown architecture, tensors of the wrong name, shape or dtype, NaN or inf
        weights, a card that is missing where one is needed, incomplete or inconsistent, or
        whose sha256 does not match the weights, and for an ONNX graph that is refused.
    """
    path = resolve_model_path(name_or_path)
    card_name = card_path(path).name
    if path.suffix.lower() == ".recipe":
        _refuse_card_for_other_weights(read_card(path, strict=True), path)
        try:
            return load_recipe(path, device=device)
        except (RecipeError, ModelLoadError) as exc:  # the recipe named once, its members' errors too
            message = str(exc)
            raise ModelLoadError(message if message.startswith(f"{path.name}: ") else f"{path.name}: {message}") from None
    if path.suffix.lower() == ".onnx":
        card = read_card(path, strict=True)
        conventions, dataset = conventions_from_card(card, path.name, card_name, None, onnx=True)
        _refuse_card_for_other_weights(card, path)
        return load_onnx_as(path, conventions, dataset, device)
    state, metadata = read_safetensors(path)
    card = read_card(path, strict=True)
    arch = metadata.get("architecture") or (card.architecture if card else None) or "small_cnn"
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ModelLoadError(
            f"{path.name}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
        )
    if card is not None and card.architecture not in (None, arch):
        raise ModelLoadError(f"{path.name}: its metadata says architecture {arch!r}, its card {card_name} "
                             f"says {card.architecture!r}; correct the card")
    _refuse_card_for_other_weights(card, path)
    conventions, dataset = conventions_from_card(card, path.name, card_name, arch)
    ds = get_dataset(dataset)
    model = build(arch, ds.shape, ds.num_classes)
    try:
        check_state(state, model, arch, path.name)
    except ModelLoadError as exc:
        if card is None and "architecture" not in metadata:
            raise _no_card_error(path, state, exc) from None
        fits = [a for a in fitting_architectures(state, ds.shape, ds.num_classes) if a != arch]
        if fits:
            raise ModelLoadError(f"{exc}; its tensors fit architecture {fits[0]!r}: correct the card's "
                                 "\"architecture\"") from None
        worlds = [d.name for d in DATASETS.values() if d.name != ds.name
                  and fitting_architectures(state, d.shape, d.num_classes) == [arch]]
        if worlds:
            raise ModelLoadError(f"{exc} (as built for {ds.name} images, {'x'.join(map(str, ds.shape))}); its tensors "
                                 f"fit {arch} for {worlds[0]}: correct the card's \"dataset\"") from None
        raise
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.requires_grad_(False)
    return adapt(model, conventions).eval().to(device=device, memory_format=torch.channels_last)


def load_weights(name_or_path: str | os.PathLike, architecture: str) -> dict[str, torch.Tensor]:
    """The checked state dict of a ``.safetensors`` model of ``architecture`` (float32), to start
    training from (``training.train --init``). Raises ModelLoadError as :func:`load_model` does."""
    path = resolve_model_path(name_or_path)
    state, metadata = read_safetensors(path)
    card = read_card(path)
    arch = metadata.get("architecture") or (card.architecture if card else None) or "small_cnn"
    if arch != architecture:
        raise ModelLoadError(f"{path.name} is a {arch} model, not {architecture}")
    ds = get_dataset(card.dataset if card else DEFAULT_DATASET)
    check_state(state, build(architecture, ds.shape, ds.num_classes), architecture, path.name)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _no_card_error(path: Path, state: dict[str, torch.Tensor], exc: ModelLoadError) -> ModelLoadError:
    """A file without a card whose tensors are not the default small_cnn's: say what to write."""
    fits = fitting_architectures(state)
    hint = (f"its tensors fit architecture {fits[0]!r}" if fits
            else f"its tensors fit none of the known architectures ({', '.join(ARCHITECTURES)})")
    return ModelLoadError(missing_card_message(
        path.name, card_path(path).name, f"without one it is read as small_cnn, and {exc}; {hint}",
        fits[0] if fits else " | ".join(ARCHITECTURES), ARCHITECTURE_LAYOUTS[fits[0]] if fits else "image"))


def read_recipe(path: str | os.PathLike) -> Recipe:
    """The :class:`Recipe` in a ``.recipe`` JSON file."""
    path = Path(path)
    try:
        too_large = path.stat().st_size > MAX_RECIPE_BYTES
        data = None if too_large else json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path.name}: cannot read the recipe ({exc})") from exc
    if too_large:
        raise RecipeError(f"{path.name}: too large for a recipe")
    try:
        return Recipe.from_dict(data)
    except (RecipeError, TypeError) as exc:  # TypeError: a required setting is missing
        raise RecipeError(f"{path.name}: {exc}") from None


def load_onnx_as(path: Path, conventions: Conventions, dataset: str, device: str | torch.device = "cpu") -> nn.Module:
    """An ONNX graph in eval mode on ``device``, taking the app's pixels and returning logits, given
    its ``conventions`` and data set (from its card, or detected: ``user_models``)."""
    return adapt(load_onnx(path, conventions, dataset), conventions).eval().to(device=device)


def load_recipe(recipe: Recipe | str | os.PathLike, device: str | torch.device = "cpu") -> Guided:
    """A :class:`Guided` model from a recipe or a ``.recipe`` file: its models loaded (judges
    refused, one data set), ensembled if several, and its prior loaded."""
    if not isinstance(recipe, Recipe):
        recipe = read_recipe(recipe)
    paths = [resolve_model_path(m) for m in recipe.models]
    if any(p.suffix == RECIPE_SUFFIX for p in paths):
        raise RecipeError("a recipe's models must be classifiers, not other recipes")
    entries = [entry_of(p) for p in paths]
    try:
        refuse_judges(entries)
        dataset = check_one_dataset(entries)
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    members = [load_model(p, device=device) for p in paths]
    classifier = members[0] if len(members) == 1 else Ensemble(members)
    prior = _recipe_prior(recipe.prior, "prior", dataset, device) if recipe.prior is not None else None
    critic = _recipe_prior(recipe.critic, "critic", dataset, device) if recipe.critic is not None else None
    return Guided(classifier, recipe, prior, dataset, critic).eval()


def _recipe_prior(name: str, role: str, dataset: str, device) -> torch.nn.Module:
    """A recipe's ``prior`` (a denoiser) or ``critic`` (a realism critic), of the recipe's data set."""
    try:
        module, card = load_prior(name, device=device)
    except PriorLoadError as exc:
        raise RecipeError(str(exc)) from None
    if (card.prior == "critic") != (role == "critic"):
        raise RecipeError(f"{role} {name} is a {card.prior} prior; a recipe's {role} must be "
                          + ("a realism critic" if role == "critic" else "a denoiser (dae or score)"))
    if card.dataset != dataset:
        raise RecipeError(f"{role} {name} is of {card.dataset}, the models of {dataset}")
    return module


def entry_of(path: str | os.PathLike, source: Source = "folder", strict: bool = False) -> ModelEntry:
    """The listing entry of a model file: its stem as name, and its card (an empty one if it has none)."""
    path = Path(path)
    return ModelEntry(path.stem, path, source, read_card(path, strict=strict) or ModelCard())


def list_models(folder: str | os.PathLike | None = None, source: Source | None = None) -> list[ModelEntry]:
    """Every model file with a readable card in ``folder`` (default: the shipped models), by name.

    ``source`` says where the folder is for the listing (default: ``"shipped"`` for the shipped
    models folder, else ``"folder"``).
    """
    folder = Path(folder) if folder is not None else models_dir()
    source = source or ("shipped" if folder == models_dir() else "folder")
    entries = []
    for weights in sorted(p for p in folder.glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()):
        card = read_card(weights)
        if card is not None:
            entries.append(ModelEntry(weights.stem, weights, source, card))
    return entries


def retry_notes(entries: Sequence[ModelEntry], models: Sequence[nn.Module], steps: int) -> list[str]:
    """A line for each recipe among ``models`` whose retry a run of ``steps`` steps leaves too little room
    (:func:`~trav_gui.engine.models.recipes.retry_note`; its card says the steps its figures were measured at)."""
    notes = []
    for entry, model in zip(entries, models):
        if isinstance(model, Guided):
            note = retry_note(entry.name, model.recipe, steps, entry.card.evaluation.realism.get("steps"))
            if note is not None:
                notes.append(note)
    return notes

