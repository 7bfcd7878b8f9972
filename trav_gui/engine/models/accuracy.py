"""How often a model labels the shipped test set of its data set right."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trav_gui.engine.data.datasets import test_set

__all__ = ["clean_accuracy"]


def clean_accuracy(model: nn.Module, dataset: str, device: str | torch.device = "cpu",
                   batch: int = 500) -> tuple[float, int]:
    """The fraction of the shipped test set of ``dataset`` that ``model`` labels right, and its size."""
    images, labels = test_set(dataset)
    right = 0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = torch.from_numpy(images[start: start + batch].astype(np.float32) / 255.0)
            x = (x[:, None] if x.ndim == 3 else x).to(device)  # grey sets are stored (N, H, W), colour (N, 3, H, W)
            predicted = model(x).argmax(1).cpu().numpy()
            right += int((predicted == labels[start: start + batch]).sum())
    return right / len(images), len(images)
