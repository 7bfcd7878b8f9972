"""Shared fixtures: tiny models with known gradients, and a folder of small saved models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trav_gui.engine.models import SmallCNN, save_model


class LinearModel(nn.Module):
    """logits = W x + b: the gradient of class c's logit is W[c], exactly."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(10, 784, generator=g) * 0.05, requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(10), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.fixture
def linear_model():
    return LinearModel(seed=0).eval()


@pytest.fixture
def two_models():
    return [LinearModel(seed=1).eval(), LinearModel(seed=2).eval()]


@pytest.fixture
def model_folder(tmp_path):
    """A folder with two untrained SmallCNN models, ``a`` and ``b``, each with a card."""
    for i, name in enumerate(["a", "b"]):
        torch.manual_seed(i)
        save_model(SmallCNN(), tmp_path / f"{name}.safetensors",
                   {"kind": "test", "evaluation": {"clean_accuracy": 0.1, "robust": []}}, "small_cnn")
    return tmp_path
