"""MNIST: the shipped test digits (no download needed) and the training set at the data root."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from functools import lru_cache

import numpy as np
import torch

from trav_gui.paths import data_root, resources_dir

__all__ = ["DigitsUnavailableError", "MnistUnavailableError", "load_mnist", "test_digits"]

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MnistUnavailableError(RuntimeError):
    """The MNIST files at the data root are missing or unreadable; the message says how to fix it."""


class DigitsUnavailableError(ValueError):
    """The shipped test digits (``resources/mnist_test.npz``) are missing or corrupt."""


@lru_cache(maxsize=1)
def test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits shipped in ``resources/mnist_test.npz``.

    Returns
    -------
    images : (10000, 28, 28) uint8, read-only, 0 = background, 255 = ink.
    labels : (10000,) uint8, read-only.

    Raises
    ------
    DigitsUnavailableError : the file is missing, corrupt, or holds arrays of other shapes.
    """
    path = resources_dir() / "mnist_test.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DigitsUnavailableError(f"{path}: cannot read the shipped test digits ({exc})") from exc
    if (images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8
            or labels.shape != images.shape[:1] or labels.dtype.kind not in "iu"
            or len(labels) == 0 or labels.min() < 0 or labels.max() > 9):
        raise DigitsUnavailableError(
            f"{path}: not the shipped test digits (images {images.shape} {images.dtype}, "
            f"labels {labels.shape} {labels.dtype}); reinstall or restore resources/")
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

    raw = Path(root) / "MNIST" / "raw"
    missing = [name for name in MNIST_FILES[train] if not (raw / name).is_file()]
    if missing and not download:
        raise MnistUnavailableError(
            f"MNIST not found: {raw} has no {', '.join(missing)}. Either pass --download "
            f"(or download=True) to fetch it there, or point the data root at a folder "
            f"holding MNIST/raw/*-ubyte: --data-root DIR or TRAV_GUI_DATA=DIR.")
    try:
        ds = torchvision.datasets.MNIST(root=str(root), train=train, download=download)
        raw_x, raw_y = ds.data.numpy(), ds.targets.numpy()
    # torchvision reports a damaged file with whatever its parser trips over, an
    # AssertionError on a bad magic number included.
    except Exception as exc:  # noqa: BLE001
        raise MnistUnavailableError(_corrupt_message(raw, exc)) from exc
    expected = 60_000 if train else 10_000
    if (raw_x.shape != (expected, 28, 28) or raw_y.shape != (expected,)
            or raw_y.min() < 0 or raw_y.max() > 9):
        raise MnistUnavailableError(_corrupt_message(
            raw, f"images {raw_x.shape}, labels {raw_y.shape} in {raw_y.min()}..{raw_y.max()}; "
                 f"expected {expected} 28x28 images labelled 0..9"))
    digest = hashlib.sha256(raw_x.tobytes() + raw_y.tobytes()).hexdigest()
    images = torch.from_numpy(raw_x).float().div_(255.0)[:, None]
    return images, torch.from_numpy(raw_y).long(), digest


def _corrupt_message(raw: Path, why: object) -> str:
    return (f"MNIST under {raw} is damaged ({why}). Delete that folder and fetch it again "
            f"with --download (or download=True), or point the data root at a good copy: "
            f"--data-root DIR or TRAV_GUI_DATA=DIR.")
