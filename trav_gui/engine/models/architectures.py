"""The classifier architectures, by name: the app's own (``SmallCNN``, ``WideCNN``; ``MadryCNN``,
SmallCNN at its published width), two for
users' own weights (``LeNet5``, ``MLP``) and the usual robust CIFAR-10 network (``PreActResNet18``,
with RobustBench's parameter names).

Every one is built for a data set's image shape ``(C, H, W)`` and class count ``K`` (by default
MNIST's ``(1, 28, 28)`` and 10) and maps ``(N, C, H, W)`` float32 pixels in [0, 1] (``MLP``:
``(N, C·H·W)``) to logits ``(N, K)``. The shape changes only the first layer's input channels and
the sizes of the flat layers, never a parameter's name: MNIST weights load as they always did. The users' two are plain ``nn.Sequential``, so that a model someone built as the same ``nn.Sequential``
in their own code saves a state dict (``0.weight``, ``0.bias``, ``3.weight``...) that loads
here unchanged: ``safetensors.torch.save_file(model.state_dict(), "lenet.safetensors")`` plus
a card naming the architecture (see :mod:`trav_gui.engine.models.conventions`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int, int]
MNIST_SHAPE: Shape = (1, 28, 28)

__all__ = ["ARCHITECTURES", "ARCHITECTURE_LAYOUTS", "MNIST_SHAPE", "LeNet5", "MLP", "MadryCNN", "PreActResNet18",
           "Shape", "SmallCNN", "WideCNN", "build", "fitting_architectures"]


class SmallCNN(nn.Module):
    """The product's classifier: two 5×5 conv layers and a 128-unit hidden layer.

    This is the MNIST network of Madry et al. (2018) with its 1024-unit hidden layer cut to
    128: the same convolutional features, 455k instead of 3.3M parameters. Adversarial
    training costs about eight forward/backward passes per batch, and on a 2-core CPU this
    net trains an L2-PGD epoch in about 3.5 minutes while reaching the robustness of the
    published models; a traversal step on one image costs about 1 ms.

    Shapes: input ``(N, C, H, W)`` float32 in [0, 1]; output logits ``(N, K)``.
    """

    hidden = 128

    def __init__(self, shape: Shape = MNIST_SHAPE, num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MadryCNN(SmallCNN):
    """The MNIST network of Madry et al. (2018) as published: ``SmallCNN`` with its 1024-unit
    hidden layer (3.3M parameters; the same tensor names, so a state dict tells the two apart by
    shape). About 30 % more compute per pass than ``SmallCNN``; the capacity adversarial training
    asks for when every training image is also moved (``--shift``).

    Shapes: input ``(N, C, H, W)`` float32 in [0, 1]; output logits ``(N, K)``.
    """

    hidden = 1024


class WideCNN(nn.Module):
    """A second, differently built classifier: four 3×3 conv layers, 256 hidden units.

    Used only as an independent judge in the realism benchmarks: a model of another
    architecture and seed that agrees a traversal reached the target says the image changed
    meaning, not just one network's decision.
    """

    def __init__(self, shape: Shape = MNIST_SHAPE, num_classes: int = 10) -> None:
        super().__init__()
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
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
            nn.Linear(64 * (h // 4) * (w // 4), 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Sequential):
    """LeNet-5 in its common modern form (ReLU, max pooling), for users' own weights.

    Exactly ``nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
    nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))``: a model built that way (or from this
    class) saves a state dict this architecture reads. Input (N, 1, 28, 28); output (N, 10)
    (other shapes: the first conv takes C channels, the first linear layer the flattened features).
    """

    def __init__(self, shape: Shape = MNIST_SHAPE, num_classes: int = 10) -> None:
        c, h, w = shape
        super().__init__(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * ((h // 2 - 4) // 2) * ((w // 2 - 4) // 2), 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
        )


class MLP(nn.Sequential):
    """A small multilayer perceptron on flat pixels, for users' own weights.

    Exactly ``nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
    nn.Linear(128, 10))``. Input (N, 784) (its card says ``"layout": "flat"``); output (N, 10)
    (other shapes: (N, C·H·W) in, (N, K) out).
    """

    def __init__(self, shape: Shape = MNIST_SHAPE, num_classes: int = 10) -> None:
        c, h, w = shape
        super().__init__(nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, num_classes))


class PreActBlock(nn.Module):
    """A pre-activation basic block (He et al. 2016), as RobustBench's ``PreActBlock``:
    BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut, a 1×1 conv of the block's input where the
    shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(x) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(nn.Module):
    """PreActResNet-18, the usual architecture of robust CIFAR-10 models (e.g. Wong et al. 2020),
    with the parameter names of RobustBench's ``PreActResNet18()``
    (``robustbench/model_zoo/architectures/resnet.py``): ``conv1``, ``layer1.0.bn1``...
    ``layer4.1.conv2``, ``layer2.0.shortcut.0`` (layers 2-4), ``linear``; no batch norm before
    ``linear``. A RobustBench state dict saved with ``safetensors.torch.save_file`` loads as is
    (leave out the ``mu`` and ``sigma`` of a model that normalizes inside: they go in its card as
    ``"input": {"mean": [...], "std": [...]}``).

    Shapes: input ``(N, C, H, W)`` float32 in [0, 1]; output logits ``(N, K)``. For (3, 32, 32),
    RobustBench's network exactly; for other sizes the final pooling averages the whole feature
    map (RobustBench's 4×4 average pool is that for 32×32 and 28×28 inputs).
    """

    def __init__(self, shape: Shape = (3, 32, 32), num_classes: int = 10) -> None:
        super().__init__()
        c = shape[0]
        self.conv1 = nn.Conv2d(c, 64, 3, stride=1, padding=1, bias=False)
        planes_in = 64
        for i, (planes, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
            blocks = nn.Sequential(PreActBlock(planes_in, planes, stride), PreActBlock(planes, planes))
            setattr(self, f"layer{i}", blocks)
            planes_in = planes
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": SmallCNN,
    "madry_cnn": MadryCNN,
    "wide_cnn": WideCNN,
    "lenet5": LeNet5,
    "mlp": MLP,
    "preact_resnet18": PreActResNet18,
}
# The input each architecture takes: "image" (N, C, H, W) or "flat" (N, C·H·W).
ARCHITECTURE_LAYOUTS = {"small_cnn": "image", "madry_cnn": "image", "wide_cnn": "image", "lenet5": "image", "mlp": "flat",
                        "preact_resnet18": "image"}


def build(name: str, shape: Shape = MNIST_SHAPE, num_classes: int = 10) -> nn.Module:
    """Architecture ``name`` built for images of ``shape`` (C, H, W) and ``num_classes`` classes."""
    return ARCHITECTURES[name](shape=tuple(shape), num_classes=num_classes)


def fitting_architectures(state: dict[str, torch.Tensor], shape: Shape = MNIST_SHAPE,
                          num_classes: int = 10) -> list[str]:
    """The registered architectures whose tensors, built for this shape and class count, have
    exactly these names and shapes."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    return [name for name in ARCHITECTURES
            if {k: tuple(v.shape) for k, v in build(name, shape, num_classes).state_dict().items()} == shapes]
