"""Data sets: a registry of image worlds, their shipped test sets and their training data.

Each entry (:class:`Dataset`) names the set, its image shape (channels, height, width), its
class names, the torchvision class that reads its training data from the data root, and the
compressed test set shipped in ``resources/`` (so the app, the CLI and the evaluator need no
download). Every layer reads the shape and the class count from here: nothing else assumes
one grey 28×28 channel or ten classes.

A user's own data set (``trav-gui datasets add``, :mod:`trav_gui.engine.data.folders`) is an
entry too: its folder in the user data sets folder holds ``dataset.json`` (its card),
``train.npz`` and ``test.npz``; :func:`get_dataset`, :func:`test_set` and
:func:`load_training_set` find it there, :func:`all_datasets` lists shipped and user sets.

A colour world may be *derived* from a grey one (``colored-mnist`` from MNIST): its images are
the grey set's, coloured by :func:`trav_gui.engine.data.colored.colorize` with a fixed seed
per split, so the training images are made from the grey files on the fly.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from trav_gui.engine.data import colored
from trav_gui.paths import data_root, resources_dir, user_datasets_dir

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "FASHION_MNIST",
    "MNIST",
    "COLORED_MNIST",
    "SHIPPED_COUNTS",
    "Dataset",
    "DatasetCard",
    "DatasetName",
    "DatasetUnavailableError",
    "DigitsUnavailableError",
    "MnistUnavailableError",
    "all_datasets",
    "arrays_sha256",
    "forget_cached",
    "get_dataset",
    "load_mnist",
    "load_training_set",
    "realism_reference_path",
    "test_digits",
    "test_images",
    "test_set",
    "user_judge_path",
    "user_dataset_problems",
    "user_datasets",
]


@dataclass(frozen=True)
class Dataset:
    """One image world: its shape, its classes, and where its images come from."""

    name: str                      # registry key and ``--dataset`` value
    title: str                     # for people: "MNIST", "Fashion-MNIST"
    class_names: tuple[str, ...]   # in label order
    torchvision_class: str         # the ``torchvision.datasets`` class reading the training data
    folder: str                    # torchvision's folder under the data root
    test_file: str                 # the shipped test set under ``resources/``
    item: str                      # what one image is: "digit", "garment"
    apt_package: str | None = None  # a Debian package that ships the raw files, if any
    short_names: tuple[str, ...] | None = None  # for tight captions; the class names if None
    shape: tuple[int, int, int] = (1, 28, 28)  # (channels, height, width) of one image
    # A colour world made from a grey one: the grey set's name, and the hue seeds of its
    # (training, test) splits (see trav_gui.engine.data.colored).
    colored_from: str | None = None
    colour_seeds: tuple[int, int] = (colored.TRAIN_SEED, colored.TEST_SEED)
    # A user's data set: its folder (dataset.json, train.npz, test.npz), where it was imported
    # from, its (training, test) image counts and the sha256 of each split's arrays. With the
    # digests in the entry, a set removed and added again under its name is another entry, so
    # no cache serves the old one's images.
    home: str | None = None
    source: str | None = None
    counts: tuple[int, int] | None = None
    sha256: tuple[str, str] | None = None

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of one image."""
        return self.shape[1], self.shape[2]

    @property
    def is_colour(self) -> bool:
        return self.shape[0] == 3

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def label(self, k: int) -> str:
        """Class ``k``'s name for readouts: ``"7"`` for digits, ``"Sneaker"`` for clothes."""
        return self.class_names[k]

    def short(self, k: int) -> str:
        """Class ``k``'s name in at most 8 characters, for gallery captions and buttons."""
        return (self.short_names or self.class_names)[k]


MNIST = "mnist"
FASHION_MNIST = "fashion-mnist"
COLORED_MNIST = "colored-mnist"

DATASETS: dict[str, Dataset] = {
    MNIST: Dataset(
        name=MNIST, title="MNIST", class_names=tuple(str(k) for k in range(10)),
        torchvision_class="MNIST", folder="MNIST", test_file="mnist_test.npz", item="digit"),
    FASHION_MNIST: Dataset(
        name=FASHION_MNIST, title="Fashion-MNIST",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        torchvision_class="FashionMNIST", folder="FashionMNIST",
        test_file="fashion_mnist_test.npz", item="garment", apt_package="dataset-fashion-mnist",
        short_names=("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Boot")),
    COLORED_MNIST: Dataset(
        name=COLORED_MNIST, title="Colored-MNIST", class_names=tuple(str(k) for k in range(10)),
        torchvision_class="MNIST", folder="MNIST", test_file="colored_mnist_test.npz", item="digit",
        shape=(3, 28, 28), colored_from=MNIST),
}
# Also the data set of cards and run records written before there were several.
DEFAULT_DATASET = MNIST
# The (training, test) images of every shipped set.
SHIPPED_COUNTS = (60_000, 10_000)
CARD_FILE = "dataset.json"
SPLITS = ("train", "test")


def check_dataset_name(name: object) -> str:
    """``name`` if it is a shipped or user data set's name; a ValueError naming the known ones."""
    if not isinstance(name, str) or name not in all_datasets():
        raise ValueError(f"\"dataset\" must be one of {', '.join(all_datasets())}, got {name!r}")
    return name


DatasetName = Annotated[str, PlainValidator(check_dataset_name)]
"""A registered data set's name, as a type that pydantic models check (model cards, run records)."""

RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_FILES = RAW_FILES  # the same names for every set in torchvision's layout


class DatasetUnavailableError(RuntimeError):
    """The training files at the data root are missing or unreadable; the message says how to fix it."""


MnistUnavailableError = DatasetUnavailableError


class DigitsUnavailableError(ValueError):
    """A shipped test set (``resources/*_test.npz``) is missing or corrupt."""


def get_dataset(name: str | Dataset | None) -> Dataset:
    """The entry called ``name`` (None: MNIST), shipped or the user's; a clear ValueError for
    unknown names and for a user data set whose card cannot be read."""
    if isinstance(name, Dataset):
        return name
    key = DEFAULT_DATASET if name is None else str(name).lower()
    if key in DATASETS:
        return DATASETS[key]
    found, problems = _scan_user_datasets()
    if key in found:
        return found[key]
    if key in problems:
        raise ValueError(f"user data set {key!r} cannot be read: {problems[key]}")
    raise ValueError(f"unknown data set {name!r}; known: {', '.join([*DATASETS, *found])}")


def all_datasets() -> dict[str, Dataset]:
    """The shipped data sets, then the user's (by name)."""
    return {**DATASETS, **user_datasets()}


def user_datasets() -> dict[str, Dataset]:
    """The user's data sets (``trav-gui datasets add``), by name; unreadable ones left out
    (see :func:`user_dataset_problems`)."""
    return dict(_scan_user_datasets()[0])


def user_dataset_problems() -> dict[str, str]:
    """The folders in the user data sets folder that are not readable data sets: name -> why."""
    return dict(_scan_user_datasets()[1])


class DatasetCard(BaseModel):
    """A user data set's ``dataset.json``: what :func:`~trav_gui.engine.data.folders.import_folder` wrote."""

    model_config = ConfigDict(extra="allow")

    name: str
    title: str = Field(min_length=1, max_length=64)
    shape: tuple[int, int, int]
    class_names: list[str] = Field(min_length=2)
    counts: dict[str, dict[str, int]]   # split -> class -> images
    sha256: dict[str, str]              # split -> sha256 of its images' and labels' bytes
    source: str = ""

    def entry(self, home: Path) -> Dataset:
        c, h, w = self.shape
        if c not in (1, 3) or h != w or h < 1 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"shape {list(self.shape)} or class names {self.class_names} are not a data set's")
        if set(self.counts) != set(SPLITS) or set(self.sha256) != set(SPLITS):
            raise ValueError(f"counts and sha256 must name the splits {', '.join(SPLITS)}")
        return Dataset(name=self.name, title=self.title, class_names=tuple(self.class_names),
                       torchvision_class="ImageFolder", folder="", test_file="test.npz", item="image",
                       short_names=tuple(n[:8] for n in self.class_names), shape=(c, h, w), home=str(home),
                       source=self.source, counts=tuple(sum(self.counts[s].values()) for s in SPLITS),
                       sha256=tuple(self.sha256[s] for s in SPLITS))


def _scan_user_datasets() -> tuple[dict[str, Dataset], dict[str, str]]:
    folder = user_datasets_dir()
    try:
        stamp = folder.stat().st_mtime_ns  # a set added or removed by another process renames into it
    except OSError:
        return {}, {}
    return _read_user_datasets(str(folder), stamp)


@lru_cache(maxsize=8)
def _read_user_datasets(folder: str, stamp: int) -> tuple[dict[str, Dataset], dict[str, str]]:
    found: dict[str, Dataset] = {}
    problems: dict[str, str] = {}
    for home in sorted(Path(folder).iterdir()):
        if home.name.startswith(".") or not home.is_dir():  # .NAME.part: an import in progress
            continue
        try:
            card = DatasetCard.model_validate(json.loads((home / CARD_FILE).read_text(encoding="utf-8")))
            if card.name != home.name or card.name in DATASETS:
                raise ValueError(f"its card names {card.name!r}")
            found[card.name] = card.entry(home)
        except (OSError, ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
            problems[home.name] = f"{home / CARD_FILE}: {' '.join(str(exc).split())}"
    return found, problems


def forget_cached() -> None:
    """Drop every cached entry, test set and training set: after a data set is added or removed."""
    _read_user_datasets.cache_clear()
    _test_set.cache_clear()
    _load.cache_clear()
    _load_user.cache_clear()


def realism_reference_path(name: str | Dataset | None) -> Path:
    """Where the realism reference images of a data set are: ``resources/realism_<name>.npz`` for
    a shipped set, ``realism.npz`` in its folder for a user's (``training.build_realism_reference``)."""
    ds = get_dataset(name)
    return Path(ds.home) / "realism.npz" if ds.home else resources_dir() / f"realism_{ds.name.replace('-', '_')}.npz"


def user_judge_path(name: str | Dataset) -> Path | None:
    """Where a user set's judge lives (``judge.safetensors`` in its folder, written by
    ``python -m training.train --dataset NAME --judge``); None for a shipped set."""
    ds = get_dataset(name)
    return Path(ds.home) / "judge.safetensors" if ds.home else None


def test_set(name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The test images of data set ``name``: shipped in ``resources/`` (10,000), or a user set's test split.

    Returns
    -------
    images : (N, H, W) uint8 for a grey set, (N, 3, H, W) for a colour one; read-only,
        0 = background, 255 = ink.
    labels : (N,) uint8 (uint16 for a user set of over 256 classes), read-only.

    Raises
    ------
    DigitsUnavailableError : the file is missing, corrupt, or holds arrays of other shapes.
    ValueError : ``name`` is not a known data set.
    """
    return _test_set(get_dataset(name))


@lru_cache(maxsize=4)
def _test_set(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    if ds.home:
        return _read_user_split(ds, "test", DigitsUnavailableError)
    path = resources_dir() / ds.test_file
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DigitsUnavailableError(f"{path}: cannot read the shipped {ds.title} test set ({exc})") from exc
    if (images.shape[1:] != stored_shape(ds) or images.dtype != np.uint8
            or labels.shape != images.shape[:1] or labels.dtype.kind not in "iu"
            or len(labels) == 0 or labels.min() < 0 or labels.max() >= ds.num_classes):
        raise DigitsUnavailableError(
            f"{path}: not the shipped {ds.title} test set (images {images.shape} {images.dtype}, "
            f"labels {labels.shape} {labels.dtype}); reinstall or restore resources/")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


# Those who swap resources/ under a running process (tests) clear the cache as they always did.
test_set.cache_clear = _test_set.cache_clear  # type: ignore[attr-defined]


def _read_user_split(ds: Dataset, split: str, error: type[Exception]) -> tuple[np.ndarray, np.ndarray]:
    """A user set's ``<split>.npz``, checked against its card (shape, count, classes, sha256); read-only."""
    path = Path(ds.home) / f"{split}.npz"
    fix = f"remove it and add its folder again: trav-gui datasets remove {ds.name}; trav-gui datasets add ..."
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise error(f"{path}: cannot read the {ds.title} {split} images ({exc}); {fix}") from exc
    k = SPLITS.index(split)
    if (images.shape != (ds.counts[k], *stored_shape(ds)) or images.dtype != np.uint8
            or labels.shape != images.shape[:1] or labels.dtype.kind not in "iu"
            or labels.min() < 0 or labels.max() >= ds.num_classes):
        raise error(f"{path}: not the {ds.title} {split} images its card describes (images {images.shape} "
                    f"{images.dtype}, labels {labels.shape} {labels.dtype}); {fix}")
    if arrays_sha256(images, labels) != ds.sha256[k]:
        raise error(f"{path}: changed since it was added (its sha256 is not its card's); {fix}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of ``images``' bytes then ``labels``' (C order): what a split's digest is, shipped or the user's."""
    digest = hashlib.sha256()
    for a in (images, labels):
        a = np.ascontiguousarray(a)
        for rows in range(0, len(a), 4096):  # in pieces: a memory-mapped split is read page by page
            digest.update(a[rows: rows + 4096].data)
    return digest.hexdigest()


def stored_shape(ds: Dataset) -> tuple[int, ...]:
    """One image's shape in a shipped test set: (H, W) for grey sets (as they always were), (3, H, W) for colour."""
    return ds.size if ds.channels == 1 else ds.shape


def test_images(name: str | None = None, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` (None: all) shipped test images of data set ``name`` as (N, C, H, W)
    float32 in [0, 1], and their labels (N,) int64."""
    images, labels = test_set(name)
    x = torch.from_numpy(images[:limit].astype(np.float32) / 255.0)
    return (x[:, None] if x.ndim == 3 else x), torch.from_numpy(labels[:limit].astype(np.int64))


def test_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 MNIST test digits shipped in ``resources/mnist_test.npz`` (see :func:`test_set`)."""
    return test_set(DEFAULT_DATASET)


def load_training_set(dataset: str | None, train: bool, root: str | os.PathLike | None = None,
                      download: bool = False) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A data set's training (or test) split from torchvision's layout under the data root.

    Returns
    -------
    images : (N, C, H, W) float32 in [0, 1] (the data set's shape)
    labels : (N,) int64
    digest : sha256 of the raw images and labels, to record which data a model saw.

    A user data set's splits are read from its folder (``root`` and ``download`` do not apply).

    Raises
    ------
    DatasetUnavailableError : the files are missing or corrupt (with ``download=False``),
        with the path looked at and the ways to fix it.
    """
    ds = get_dataset(dataset)
    if ds.home:
        return _load_user(ds, train)
    return _load(ds.name, train, data_root(root), download)


@lru_cache(maxsize=2)
def _load_user(ds: Dataset, train: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    split = SPLITS[0 if train else 1]
    pixels, labels = _read_user_split(ds, split, DatasetUnavailableError)
    images = torch.from_numpy(pixels.copy()).float().div_(255.0)
    return (images[:, None] if ds.channels == 1 else images), torch.from_numpy(labels.astype(np.int64)), \
        ds.sha256[SPLITS.index(split)]


def load_mnist(train: bool, root: str | os.PathLike | None = None, download: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """MNIST's training (or test) split; see :func:`load_training_set`."""
    return load_training_set(DEFAULT_DATASET, train, root, download)


@lru_cache(maxsize=4)
def _load(name: str, train: bool, root, download: bool) -> tuple[torch.Tensor, torch.Tensor, str]:
    import torchvision  # lazy: reading the raw files is the only use, and it costs ~1 s to import

    ds = DATASETS[name]
    if ds.colored_from:
        grey, labels, digest = _load(ds.colored_from, train, root, download)
        pixels = np.rint(grey[:, 0].numpy() * 255).astype(np.uint8)
        seed = ds.colour_seeds[0 if train else 1]
        rgb = colored.colorize(pixels, colored.hues(len(pixels), seed))
        digest = hashlib.sha256(f"{digest} coloured with hue seed {seed}".encode()).hexdigest()
        return torch.from_numpy(rgb).float().div_(255.0), labels, digest
    raw = Path(root) / ds.folder / "raw"
    missing = [f for f in RAW_FILES[train] if not (raw / f).is_file()]
    if missing and not download:
        apt = (f", or install Debian's {ds.apt_package} and copy its files (ungzipped) there"
               if ds.apt_package else "")
        raise DatasetUnavailableError(
            f"{ds.title} not found: {raw} has no {', '.join(missing)}. Either pass --download "
            f"(or download=True) to fetch it there{apt}, or point the data root at a folder "
            f"holding {ds.folder}/raw/*-ubyte: --data-root DIR or TRAV_GUI_DATA=DIR.")
    try:
        reader = getattr(torchvision.datasets, ds.torchvision_class)
        data = reader(root=str(root), train=train, download=download)
        raw_x, raw_y = data.data.numpy(), data.targets.numpy()
    # torchvision reports a damaged file with whatever its parser trips over, an
    # AssertionError on a bad magic number included.
    except Exception as exc:  # noqa: BLE001
        raise DatasetUnavailableError(_corrupt_message(ds, raw, exc)) from exc
    expected = SHIPPED_COUNTS[0 if train else 1]
    if (raw_x.shape != (expected, 28, 28) or raw_y.shape != (expected,)
            or raw_y.min() < 0 or raw_y.max() >= ds.num_classes):
        raise DatasetUnavailableError(_corrupt_message(
            ds, raw, f"images {raw_x.shape}, labels {raw_y.shape} in {raw_y.min()}..{raw_y.max()}; "
                     f"expected {expected} 28x28 images labelled 0..{ds.num_classes - 1}"))
    digest = hashlib.sha256(raw_x.tobytes() + raw_y.tobytes()).hexdigest()
    images = torch.from_numpy(raw_x).float().div_(255.0)[:, None]
    return images, torch.from_numpy(raw_y).long(), digest


def _corrupt_message(ds: Dataset, raw: Path, why: object) -> str:
    return (f"{ds.title} under {raw} is damaged ({why}). Delete that folder and fetch it again "
            f"with --download (or download=True), or point the data root at a good copy: "
            f"--data-root DIR or TRAV_GUI_DATA=DIR.")
