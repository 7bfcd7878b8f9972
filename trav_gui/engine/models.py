"""Classifier architectures and the one safe way to load their weights.

Every model here maps ``(N, 1, 28, 28)`` float32 pixels in [0, 1] to logits ``(N, 10)``.
Weights live in ``.safetensors`` files with a JSON model card beside them
(``robust.safetensors`` + ``robust.json``). Pickles are never read: a pickle can run
arbitrary code the moment it is opened, and these files are ones users send each other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from trav_gui.engine.architectures import MLP, LeNet5
from trav_gui.paths import models_dir

__all__ = [
    "ARCHITECTURES",
    "ModelLoadError",
    "SmallCNN",
    "WideCNN",
    "card_dataset",
    "card_path",
    "check_one_dataset",
    "is_judge",
    "refuse_judges",
    "LeNet5",
    "MLP",
    "list_models",
    "model_sha256",
    "robust_headline",
    "load_model",
    "resolve_model_path",
    "load_weights",
    "save_model",
    "sha256_of",
    "state_sha256",
]

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
# A safetensors header of more than this is not a model of ours; refuse before parsing it.
MAX_HEADER_BYTES = 1 << 20
# A model card is a few kB; a larger file is not one (and is not read whole).
MAX_CARD_BYTES = 1 << 20


class ModelLoadError(ValueError):
    """A model file could not be loaded; the message says why and what to do."""


class SmallCNN(nn.Module):
    """The product's classifier: two 5×5 conv layers and a 128-unit hidden layer.

    This is the MNIST network of Madry et al. (2018) with its 1024-unit hidden layer cut to
    128: the same convolutional features, 455k instead of 3.3M parameters. Adversarial
    training costs about eight forward/backward passes per batch, and on a 2-core CPU this
    net trains an L2-PGD epoch in about 3.5 minutes while reaching the robustness of the
    published models; a traversal step on one image costs about 1 ms.

    Shapes: input ``(N, 1, 28, 28)`` float32 in [0, 1]; output logits ``(N, 10)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class WideCNN(nn.Module):
    """A second, differently built classifier: four 3×3 conv layers, 256 hidden units.

    Used only as an independent judge in the realism benchmarks: a model of another
    architecture and seed that agrees a traversal reached the target says the image changed
    meaning, not just one network's decision.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "small_cnn": SmallCNN,
    "wide_cnn": WideCNN,
    "lenet5": LeNet5,
    "mlp": MLP,
}
# The input each architecture takes: "image" (N, 1, 28, 28) or "flat" (N, 784).
ARCHITECTURE_LAYOUTS = {"small_cnn": "image", "wide_cnn": "image", "lenet5": "image", "mlp": "flat"}
# .recipe: a traversal recipe (trav_gui.engine.recipes): models, prior, schedule, stop rule.
MODEL_SUFFIXES = (".safetensors", ".onnx", ".recipe")


def card_path(weights: str | os.PathLike) -> Path:
    """The JSON model card that belongs beside a ``.safetensors`` file."""
    return Path(weights).with_suffix(".json")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """Turn a model's name (shipped, such as ``"robust"``, or added to the user models) or a path
    into a file path."""
    text = os.fspath(name_or_path)
    suffix = Path(text).suffix.lower()
    if os.sep not in text and "/" not in text and suffix not in (*MODEL_SUFFIXES, *PICKLE_SUFFIXES):
        from trav_gui.engine.user_models import user_models_dir

        for folder in (models_dir(), user_models_dir()):
            for ext in MODEL_SUFFIXES:
                if (folder / f"{text}{ext}").exists():
                    return folder / f"{text}{ext}"
        known = ", ".join(sorted(p.stem for p in models_dir().glob("*.safetensors")))
        raise ModelLoadError(
            f"no model named {text!r}; shipped models: {known or 'none'} (trav-gui models lists the "
            "user models too); or give the path of a .safetensors or .onnx file"
        )
    return Path(text)


def model_sha256(path: str | os.PathLike) -> str:
    """What identifies a model's weights in run records: the file's sha256, and for an ONNX
    graph with external data, the sha256 of the graph and its data files together."""
    if Path(path).suffix.lower() == ".onnx":
        from trav_gui.engine.onnx_model import onnx_sha256

        return onnx_sha256(Path(path))
    return sha256_of(path)


def state_sha256(model: nn.Module) -> str:
    """The sha256 of a model's state dict (names, dtypes, shapes and bytes): an in-memory model's id."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with 0x80; torch.save writes a zip archive ("PK").
    return head[:1] == b"\x80" or head[:2] == b"PK"


def pickle_refusal(name: str, what: str) -> str:
    """Why a pickle is refused, and the two lines that convert it where its owner trusts it."""
    return (f"{name}: {what}, which can run code when opened, so it was not opened; this app reads "
            ".safetensors (with a JSON card naming the architecture) and .onnx. Convert it in Python, "
            "where you trust the file: safetensors.torch.save_file(model.state_dict(), 'model.safetensors') "
            "or torch.onnx.export(model, torch.rand(1, 1, 28, 28), 'model.onnx')")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelLoadError(pickle_refusal(path.name, f"{path.suffix} files are pickles (torch.save, TorchScript)"))
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if _looks_like_pickle(head):
        raise ModelLoadError(pickle_refusal(path.name, "this is a pickle/torch.save/TorchScript file, not safetensors"))
    if len(head) < 8:
        raise ModelLoadError(f"{path.name}: file is truncated ({size} bytes), not safetensors")
    header_len = int.from_bytes(head, "little")
    if header_len > min(MAX_HEADER_BYTES, size - 8):
        raise ModelLoadError(
            f"{path.name}: not a valid safetensors file (header says {header_len} bytes, "
            f"file has {size})"
        )
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path.name}: not a valid safetensors file ({exc})") from exc
    return tensors, metadata


def _check_state(state: dict[str, torch.Tensor], model: nn.Module, arch: str, name: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    for key in sorted(set(expected) & set(state)):
        want, got = expected[key], state[key]
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key} has shape {tuple(got.shape)}, {arch} needs {tuple(want.shape)}")
        elif not got.is_floating_point():
            problems.append(f"{key} has dtype {got.dtype}, expected a float type")
        elif not torch.isfinite(got).all():
            problems.append(f"{key} contains NaN or inf")
    if problems:
        raise ModelLoadError(f"{name} does not fit architecture {arch!r}: " + "; ".join(problems))


def read_card(weights: str | os.PathLike, strict: bool = False) -> dict | None:
    """The model card beside ``weights``; None if there is none (or, unless ``strict``, if it is
    not a JSON object of at most 1 MiB: ``strict`` raises :class:`ModelLoadError` then)."""
    path = card_path(weights)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes, more than a card's {MAX_CARD_BYTES}")
        card = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise ValueError(f"a JSON {type(card).__name__}, not an object")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if strict:
            raise ModelLoadError(f"{path.name}: the model card cannot be read ({exc}); fix it, or delete it "
                                 "and write a new one") from None
        return None
    return card


def _refuse_card_for_other_weights(card: dict | None, path: Path) -> None:
    if card and card.get("sha256") and card["sha256"] != model_sha256(path):
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
        (a recipe, :mod:`trav_gui.engine.recipes`, loads as a :class:`~trav_gui.engine.recipes.Guided`
        model that takes its own steps). A
        ``.safetensors`` file's architecture comes from its metadata, else from its model card,
        else ``small_cnn``; an ``.onnx`` file is converted to torch (needs the ``onnx`` extra),
        see :mod:`trav_gui.engine.onnx_model`. Input and output conventions come from the card
        (:mod:`trav_gui.engine.model_card`).
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
    from trav_gui.engine.model_card import adapt, conventions_from_card

    path = resolve_model_path(name_or_path)
    card_name = card_path(path).name
    if path.suffix.lower() == ".recipe":
        from trav_gui.engine.recipes import RecipeError, load_recipe

        _refuse_card_for_other_weights(read_card(path, strict=True), path)
        try:
            return load_recipe(path, device=device)
        except RecipeError as exc:
            raise ModelLoadError(f"{path.name}: {exc}") from None
    if path.suffix.lower() == ".onnx":
        from trav_gui.engine.onnx_model import load_onnx

        card = read_card(path, strict=True)
        conventions, dataset = conventions_from_card(card, path.name, card_name, None, onnx=True)
        _refuse_card_for_other_weights(card, path)
        model = adapt(load_onnx(path, conventions, dataset), conventions)
        return model.eval().to(device=device)
    state, metadata = _read_safetensors(path)
    card = read_card(path, strict=True)
    arch = metadata.get("architecture") or (card or {}).get("architecture") or "small_cnn"
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ModelLoadError(
            f"{path.name}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
        )
    if card and card.get("architecture") not in (None, arch):
        raise ModelLoadError(f"{path.name}: its metadata says architecture {arch!r}, its card {card_name} "
                             f"says {card['architecture']!r}; correct the card")
    _refuse_card_for_other_weights(card, path)
    conventions, _ = conventions_from_card(card, path.name, card_name, arch)
    model = ARCHITECTURES[arch]()
    try:
        _check_state(state, model, arch, path.name)
    except ModelLoadError as exc:
        from trav_gui.engine.model_card import fitting_architectures

        if card is None and "architecture" not in metadata:
            raise _no_card_error(path, state, exc) from None
        fits = [a for a in fitting_architectures(state) if a != arch]
        if fits:
            raise ModelLoadError(f"{exc}; its tensors fit architecture {fits[0]!r}: correct the card's "
                                 "\"architecture\"") from None
        raise
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.requires_grad_(False)
    return adapt(model, conventions).eval().to(device=device, memory_format=torch.channels_last)


def load_weights(name_or_path: str | os.PathLike, architecture: str) -> dict[str, torch.Tensor]:
    """The checked state dict of a ``.safetensors`` model of ``architecture`` (float32), to start
    training from (``training.train --init``). Raises ModelLoadError as :func:`load_model` does."""
    path = resolve_model_path(name_or_path)
    state, metadata = _read_safetensors(path)
    arch = metadata.get("architecture") or (read_card(path) or {}).get("architecture") or "small_cnn"
    if arch != architecture:
        raise ModelLoadError(f"{path.name} is a {arch} model, not {architecture}")
    _check_state(state, ARCHITECTURES[architecture](), architecture, path.name)
    return {k: v.float() for k, v in state.items()}


def _no_card_error(path: Path, state: dict[str, torch.Tensor], exc: ModelLoadError) -> ModelLoadError:
    """A file without a card whose tensors are not the default small_cnn's: say what to write."""
    from trav_gui.engine.model_card import fitting_architectures, missing_card_message

    fits = fitting_architectures(state)
    hint = (f"its tensors fit architecture {fits[0]!r}" if fits
            else f"its tensors fit none of the known architectures ({', '.join(ARCHITECTURES)})")
    return ModelLoadError(missing_card_message(
        path.name, card_path(path).name, f"without one it is read as small_cnn, and {exc}; {hint}",
        fits[0] if fits else " | ".join(ARCHITECTURES), ARCHITECTURE_LAYOUTS[fits[0]] if fits else "image"))


def save_model(model: nn.Module, path: str | os.PathLike, card: dict, architecture: str) -> dict:
    """Write ``model``'s weights as safetensors and its card (with sha256) beside them.

    Both files are written to temporary names and renamed, so a crash leaves either the old
    pair or the new one, never half a file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={"architecture": architecture})
    card = {**card, "architecture": architecture, "weights": path.name, "sha256": sha256_of(tmp)}
    card_tmp = card_path(path).with_name(card_path(path).name + ".tmp")
    card_tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    os.replace(card_tmp, card_path(path))
    return card


def card_dataset(card: dict | None) -> str:
    """The data set a card says its model was trained on; ``"mnist"`` for cards before data sets."""
    return str((card or {}).get("dataset") or "mnist")


def check_one_dataset(cards: list[dict]) -> str:
    """The one data set of ``cards``; a ValueError naming each model's data set if they differ.

    A traversal compares models on one image of one data set: a digit classifier has nothing
    to say about a sneaker.
    """
    sets = {card_dataset(c) for c in cards}
    if len(sets) > 1:
        which = ", ".join(f"{c.get('name', '?')} ({card_dataset(c)})" for c in cards)
        raise ValueError(f"these models were trained on different data sets: {which}; "
                         "a run compares models of one data set")
    return sets.pop() if sets else "mnist"


def is_judge(card: dict | None) -> bool:
    """A judge of realism (role ``"judge"``): never traversed, ensembled or used to stop a run."""
    return (card or {}).get("role") == "judge"


def refuse_judges(cards: list[dict]) -> None:
    """ValueError naming any judge among ``cards``: a judge that is traversed judges itself."""
    judges = [c.get("name", "?") for c in cards if is_judge(c)]
    if judges:
        raise ValueError(f"{', '.join(judges)} is a judge of realism (role \"judge\"): it is never "
                         "traversed, so that its verdict stays independent; pick another model")


def robust_headline(card: dict) -> dict | None:
    """The card's strongest robustness figure: the lowest accuracy measured at its main radius.

    The main radius is the first one evaluated (the training ε). When both PGD and the
    stronger APGD worst case were measured there, the APGD figure is the honest one and is
    returned. The dict is the card's entry with ``"short"`` added: a label such as
    ``"PGD+APGD"`` for compact displays. None if the card has no robust evaluation.
    """
    runs = [r for r in ((card.get("evaluation") or {}).get("robust") or [])
            if isinstance(r, dict) and isinstance(r.get("accuracy"), (int, float)) and "eps" in r]
    if not runs:
        return None
    main = [r for r in runs if r["eps"] == runs[0]["eps"]]
    worst = min(main, key=lambda r: r["accuracy"])
    attack = str(worst.get("attack", "attack"))
    return {**worst, "short": "PGD+APGD" if "APGD" in attack else attack.split(",")[0]}


def list_models(folder: str | os.PathLike | None = None) -> list[dict]:
    """The model cards of every ``.safetensors`` or ``.onnx`` file with a card in ``folder``.

    Each card is the JSON beside the weights, with ``"name"`` (the file stem) and ``"path"``
    added. Defaults to the shipped models folder.
    """
    folder = Path(folder) if folder is not None else models_dir()
    cards = []
    for weights in sorted(p for p in folder.glob("*") if p.suffix in MODEL_SUFFIXES and p.is_file()):
        card = read_card(weights)
        if card is not None:
            cards.append({**card, "name": weights.stem, "path": str(weights)})
    return cards
