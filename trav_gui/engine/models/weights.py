"""Weights in ``.safetensors`` files: read without trusting the file, checked against an
architecture, written with their card, and hashed.

Pickles are never read: a pickle can run arbitrary code the moment it is opened, and these
files are ones users send each other.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from trav_gui.engine.files import atomic_paths, sha256_of
from trav_gui.engine.models.card import ModelCard, card_path, parse_card
from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["MAX_HEADER_BYTES", "PICKLE_SUFFIXES", "check_state", "pickle_refusal", "read_safetensors",
           "save_model", "save_weights", "state_sha256"]

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
# A safetensors header of more than this is not a model of ours; refuse before parsing it.
MAX_HEADER_BYTES = 1 << 20


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


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
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


def check_state(state: dict[str, torch.Tensor], model: nn.Module, arch: str, name: str) -> None:
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
        elif got.is_floating_point() != want.is_floating_point():  # batch norm counts its batches in int64
            kind = "a float" if want.is_floating_point() else "an integer"
            problems.append(f"{key} has dtype {got.dtype}, expected {kind} type")
        elif not torch.isfinite(got).all():
            problems.append(f"{key} contains NaN or inf")
    if problems:
        raise ModelLoadError(f"{name} does not fit architecture {arch!r}: " + "; ".join(problems))


def save_weights(model: nn.Module, path: str | os.PathLike, card: dict, metadata: dict[str, str] | None = None
                 ) -> ModelCard:
    """Write ``model``'s weights as safetensors and ``card`` (``weights`` and ``sha256`` added) beside them.

    Both files go through :func:`~trav_gui.engine.files.atomic_paths`: a crash leaves no
    half-written file, and the card names the sha256 of exactly the weights written. The card is
    checked before anything is written (ModelLoadError if it would not read back); the card as
    written is returned.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_paths(path, card_path(path)) as (weights_tmp, card_tmp):
        save_file(state, str(weights_tmp), metadata=metadata)
        card = {**card, "weights": path.name, "sha256": sha256_of(weights_tmp)}
        typed = parse_card(card, path)
        card_tmp.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return typed


def save_model(model: nn.Module, path: str | os.PathLike, card: dict, architecture: str) -> ModelCard:
    """Write a classifier of a registered ``architecture`` and its card (see :func:`save_weights`);
    the architecture goes into both the file's metadata and the card."""
    return save_weights(model, path, {**card, "architecture": architecture}, {"architecture": architecture})
