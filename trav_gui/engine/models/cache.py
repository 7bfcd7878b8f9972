"""Loaded models kept by path, and what they predict for a start image.

The app loads a model once, the first time it is ticked, and keeps it; the command line
asks the same questions of the same cache. No Qt here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from trav_gui.engine.models.card import ModelEntry
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import load_model, model_sha256

__all__ = ["ModelCache", "StartPrediction", "classify", "predict_start"]


class ModelCache:
    """Models loaded once per weights file, on one device.

    Parameters
    ----------
    device : where every model is put (``"cpu"``, ``"cuda"``...).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = str(device)
        self._models: dict[str, nn.Module] = {}
        self._sha: dict[str, str] = {}

    def get(self, path: str | os.PathLike) -> nn.Module:
        """The model in ``path``, loaded on first use (raises :class:`ModelLoadError`)."""
        key = os.fspath(path)
        if key not in self._models:
            self._models[key] = load_model(key, device=self.device)
        return self._models[key]

    def put(self, key: str | os.PathLike, model: nn.Module) -> None:
        """Keep an already loaded ``model`` as the one for ``key`` (a path, or an in-memory model's
        :attr:`~trav_gui.engine.models.card.ModelEntry.key`)."""
        self._models[os.fspath(key)] = model

    def __contains__(self, path: object) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.fspath(path) in self._models

    def sha256(self, entry: ModelEntry) -> str:
        """The sha256 of a model's weights: its card's, else hashed once from the file."""
        if entry.key not in self._sha:
            if entry.card.sha256 is None and entry.path is None:
                raise ValueError(f"{entry.name} has neither a file nor a sha256 on its card")
            self._sha[entry.key] = entry.card.sha256 or model_sha256(entry.path)
        return self._sha[entry.key]


def classify(model: nn.Module, image: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Class probabilities (K,) of one grey (H, W) or colour (3, H, W) image in [0, 1], as float32 numpy."""
    image = np.asarray(image, np.float32)
    with torch.no_grad():
        x = torch.as_tensor(image, device=device).reshape(1, -1, *image.shape[-2:])
        return torch.softmax(model(x), -1)[0].float().cpu().numpy()


@dataclass(frozen=True)
class StartPrediction:
    """What one model says of the start image: ``probs`` (K,), or ``error`` and no probs."""

    name: str
    probs: np.ndarray | None = None
    error: str | None = None

    @property
    def predicted(self) -> int | None:
        return None if self.probs is None else int(self.probs.argmax())


def predict_start(cache: ModelCache, entries: Sequence[ModelEntry], image: np.ndarray
                  ) -> list[StartPrediction]:
    """Each entry's model's prediction for ``image``, in order.

    A model that cannot be loaded, or answers NaN or inf, gets an ``error`` instead of
    probabilities; the others are unaffected.
    """
    out = []
    for entry in entries:
        try:
            model = cache.get(entry.key)
        except ModelLoadError as exc:
            out.append(StartPrediction(entry.name, error=f"cannot load ({exc})"))
            continue
        probs = classify(model, image, cache.device)
        if not np.isfinite(probs).all():
            out.append(StartPrediction(entry.name, error="NaN or inf output"))
            continue
        out.append(StartPrediction(entry.name, probs))
    return out
