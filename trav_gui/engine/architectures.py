"""Architectures for users' own weights, beside the app's own (``SmallCNN``, ``WideCNN`` in
:mod:`trav_gui.engine.models`).

Each is a plain ``nn.Sequential``, so that a model someone built as the same ``nn.Sequential``
in their own code saves a state dict (``0.weight``, ``0.bias``, ``3.weight``...) that loads
here unchanged: ``safetensors.torch.save_file(model.state_dict(), "lenet.safetensors")`` plus
a card naming the architecture (see :mod:`trav_gui.engine.model_card`).
"""

from __future__ import annotations

from torch import nn

__all__ = ["LeNet5", "MLP"]


class LeNet5(nn.Sequential):
    """LeNet-5 in its common modern form (ReLU, max pooling), for users' own weights.

    Exactly ``nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))``: a model built that way (or from this
    class) saves a state dict this architecture reads. Input (N, 1, 28, 28); output (N, 10).
    """

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
        )


class MLP(nn.Sequential):
    """A small multilayer perceptron on flat pixels, for users' own weights.

    Exactly ``nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
    nn.Linear(128, 10))``. Input (N, 784) (its card says ``"layout": "flat"``); output (N, 10).
    """

    def __init__(self) -> None:
        super().__init__(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
