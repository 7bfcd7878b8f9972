"""MNIST: the shipped test digits (no download needed) and the training set at the data root."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

import numpy as np
import torch

from trav_gui.paths import data_root, resources_dir

__all__ = ["MnistUnavailableError", "load_mnist", "test_digits"]


class MnistUnavailableError(RuntimeError):
    """The MNIST files at the data root are missing or unreadable; the message says how to fix it."""


@lru_cache(maxsize=1)
def test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits shipped in ``resources/mnist_test.npz``.

    Returns
    -------
    images : (10000, 28, 28) uint8, read-only, 0 = background, 255 = ink.
    labels : (10000,) uint8, read-only.
    """
    with np.load(resources_dir() / "mnist_test.npz") as f:
        images, labels = f["images"], f["labels"]
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist(train: bool, root: str | os.PathLike | None = None, download: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MNIST from torchvision's layout under the data root (see :func:`trav_gui.paths.data_root`).

    Returns
    -------
    images : (N, 1, 28, 28) float32 in [0, 1]
    labels : (N,) int64
    digest : sha256 of the raw images and labels, to record which data a model saw.

    Raises
    ------
    MnistUnavailableError : the files are missing or corrupt (with ``download=False``), with
        the path looked at and the two ways to fix it.
    """
    return _load_mnist(train, data_root(root), download)


@lru_cache(maxsize=4)
def _load_mnist(train: bool, root, download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    import torchvision

    try:
        ds = torchvision.datasets.MNIST(root=str(root), train=train, download=download)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        raise MnistUnavailableError(
            f"MNIST not found or unreadable under {root} ({exc}). Either pass --download "
            f"(or download=True) to fetch it there, or point the data root at a folder "
            f"holding MNIST/raw/*-ubyte: --data-root DIR or TRAV_GUI_DATA=DIR."
        ) from exc
    raw_x, raw_y = ds.data.numpy(), ds.targets.numpy()
    digest = hashlib.sha256(raw_x.tobytes() + raw_y.tobytes()).hexdigest()
    images = torch.from_numpy(raw_x).float().div_(255.0)[:, None]
    return images, torch.from_numpy(raw_y).long(), digest
