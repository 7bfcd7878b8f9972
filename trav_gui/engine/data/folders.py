"""A user's own data set from a folder of images in torchvision's ``ImageFolder`` layout.

::

    PATH/train/<class>/*.png|jpg|...   the training images, one folder per class
    PATH/test/<class>/*                the test images, the same class folders

:func:`import_folder` (``trav-gui datasets add PATH --name NAME``) checks the whole tree first,
reading only the image headers (size and mode, no pixels), then decodes image by image into
memory-mapped arrays, so a large set never sits in memory whole, and writes ``train.npz``,
``test.npz`` (stored as the shipped test sets are: grey (N, H, W), colour (N, 3, H, W), uint8)
and the card ``dataset.json`` into ``<user data sets folder>/NAME/``. Everything is written into
a hidden temporary folder that is renamed into place at the end: a refused or interrupted import
leaves nothing behind. Nothing outside the user data sets folder is written.

Classes are the class folders' names, in sorted order (label k is the k-th name, as
``ImageFolder`` numbers them). Files and folders whose names start with ``.`` are skipped.
The set is grey if every image is grey (Pillow modes ``1``, ``L``, ``LA``), else every image
is converted to RGB; an alpha channel is dropped.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from trav_gui import __version__
from trav_gui.engine.data.datasets import (
    CARD_FILE,
    DATASETS,
    SPLITS,
    Dataset,
    DatasetCard,
    arrays_sha256,
    forget_cached,
    get_dataset,
    user_dataset_problems,
    user_datasets,
)
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.paths import user_datasets_dir

__all__ = ["MAX_IMAGES", "MAX_SIDE", "MIN_SIDE", "DatasetFolderError", "FolderScan", "import_folder",
           "remove_user_dataset", "scan_folder"]

# More images than this are refused before any is read (a subset makes the point of a traversal).
MAX_IMAGES = 200_000
# Square images of MIN_SIDE..MAX_SIDE pixels: the architectures' pooling needs 28, and traversals
# of bigger images take seconds per step on a CPU.
MIN_SIDE, MAX_SIDE = 28, 64
NAME_RULE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
GREY_MODES = {"1", "L", "LA"}
COLOUR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr"}
RESIZE_HINT = ("resize them first, e.g. with Pillow: Image.open(f).convert('RGB').resize((32, 32)).save(f), "
               "or torchvision.transforms.Resize(32); see the README, 'Your own image folders'")


class DatasetFolderError(ValueError):
    """An image folder or data set name refused, or a user data set that cannot be removed; one line saying why."""


@dataclass(frozen=True)
class FolderScan:
    """What :func:`scan_folder` found: every image, its label, and the shape all of them share.

    ``files[split]`` lists ``(path, label)`` in label order, then path order.
    """

    root: Path
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[Path, int]]]
    shape: tuple[int, int, int]
    example: Path  # an image of that shape, for messages

    def counts(self, split: str) -> dict[str, int]:
        labels = np.bincount([k for _, k in self.files[split]], minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, labels)}


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _class_folders(split_dir: Path, real_root: str) -> list[Path]:
    if not split_dir.is_dir():
        raise DatasetFolderError(f"{split_dir}: no such folder; the layout is PATH/train/<class>/*.png and "
                                 "PATH/test/<class>/* (torchvision's ImageFolder)")
    if not _inside(os.path.realpath(split_dir), real_root):
        raise DatasetFolderError(f"{split_dir}: a symbolic link out of {real_root}; copy the images into the tree")
    return sorted((p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _image_files(class_dir: Path, real_root: str, budget: int) -> list[Path]:
    """Every file under ``class_dir`` (hidden ones skipped, links followed within the tree), sorted;
    refuses links out of the tree and more than ``budget`` files."""
    def refuse(err: OSError) -> None:
        raise DatasetFolderError(f"{err.filename}: cannot read the folder ({err.strerror})")

    found: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True, onerror=refuse):
        real = os.path.realpath(dirpath)
        if not _inside(real, real_root):
            raise DatasetFolderError(f"{dirpath}: a symbolic link out of {real_root}; copy the images into the tree")
        if real in seen:  # a link back to a folder already read: read it once
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                continue
            if not _inside(os.path.realpath(path), real_root):
                raise DatasetFolderError(f"{path}: a symbolic link out of {real_root}; copy the image into the tree")
            found.append(path)
            if len(found) > budget:
                raise DatasetFolderError(f"{class_dir.parent.parent}: more than {MAX_IMAGES} images; use a subset "
                                         f"of at most {MAX_IMAGES}")
    return found


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode of an image, from its header (no pixels decoded)."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except Image.DecompressionBombError:
        raise DatasetFolderError(f"{path}: far too large an image; {RESIZE_HINT}") from None
    except UnidentifiedImageError:
        raise DatasetFolderError(f"{path}: not a readable image (not a format Pillow knows)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetFolderError(f"{path}: not a readable image ({exc})") from None


def scan_folder(path: str | os.PathLike) -> FolderScan:
    """Check an ``ImageFolder`` tree without decoding a pixel; every refusal is a one-line DatasetFolderError.

    Refused: a missing ``train/`` or ``test/``, class folders that differ between them, fewer than
    two classes, an empty class folder, a file that is not an image, 16-bit or float images,
    images that are not square or not :data:`MIN_SIDE`..:data:`MAX_SIDE` pixels a side, images
    of different sizes, symbolic links out of the tree, more than :data:`MAX_IMAGES` images.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetFolderError(f"{root}: no such folder")
    real_root = os.path.realpath(root)
    classes = {split: _class_folders(root / split, real_root) for split in SPLITS}
    names = {split: [p.name for p in classes[split]] for split in SPLITS}
    if names["train"] != names["test"]:
        only = [f"{', '.join(sorted(set(names[a]) - set(names[b])))} only in {a}/"
                for a, b in (("train", "test"), ("test", "train")) if set(names[a]) - set(names[b])]
        raise DatasetFolderError(f"{root}: train/ and test/ must hold the same class folders; "
                                 f"{' and '.join(only)}")
    if len(names["train"]) < 2:
        raise DatasetFolderError(f"{root / 'train'}: {len(names['train'])} class folder(s) "
                                 f"({', '.join(names['train']) or 'none'}); a data set needs at least 2 classes")
    files: dict[str, list[tuple[Path, int]]] = {}
    total = 0
    for split in SPLITS:
        files[split] = []
        for label, folder in enumerate(classes[split]):
            found = _image_files(folder, real_root, MAX_IMAGES - total)
            if not found:
                raise DatasetFolderError(f"{folder}: no images in this class folder")
            total += len(found)
            files[split] += [(f, label) for f in found]
    size, example, grey = None, None, True
    for split in SPLITS:
        for f, _ in files[split]:
            (w, h), mode = _header(f)
            if mode not in GREY_MODES | COLOUR_MODES:
                raise DatasetFolderError(f"{f}: Pillow mode {mode} (16-bit, float or another kind of image); "
                                         "save it as an 8-bit grey or RGB PNG")
            if w != h or not MIN_SIDE <= w <= MAX_SIDE:
                raise DatasetFolderError(f"{f}: {w}x{h} pixels; images must be square, {MIN_SIDE}x{MIN_SIDE} "
                                         f"to {MAX_SIDE}x{MAX_SIDE}: {RESIZE_HINT}")
            if size is None:
                size, example = w, f
            elif w != size:
                raise DatasetFolderError(f"images of different sizes: {example} is {size}x{size}, {f} is {w}x{h}; "
                                         f"all must be one size: {RESIZE_HINT}")
            grey = grey and mode in GREY_MODES
    return FolderScan(root, tuple(names["train"]), files, (1 if grey else 3, size, size), example)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise DatasetFolderError(f"data set name {name!r} is not allowed: use 1-40 lower-case letters, digits, "
                                 "'-' or '_', starting with a letter or digit")
    if name in DATASETS:
        raise DatasetFolderError(f"{name!r} is a shipped data set; choose another --name")
    if name in user_datasets() or name in user_dataset_problems():
        raise DatasetFolderError(f"a user data set {name!r} exists already; choose another --name, or remove it "
                                 f"first: trav-gui datasets remove {name}")
    return name


def _write_split(scan: FolderScan, split: str, folder: Path, progress: Callable[[], None]) -> tuple[int, str]:
    """Decode one split into ``folder/<split>.npz``; (images, sha256)."""
    files = scan.files[split]
    c, h, w = scan.shape
    stored = (h, w) if c == 1 else (c, h, w)
    raw = folder / f"{split}.images.npy"
    images = np.lib.format.open_memmap(raw, mode="w+", dtype=np.uint8, shape=(len(files), *stored))
    labels = np.array([k for _, k in files], np.uint8 if len(scan.class_names) <= 256 else np.uint16)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                pixels = np.asarray(im.convert("L" if c == 1 else "RGB"))
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetFolderError(f"{f}: not a readable image ({exc})") from None
        if pixels.shape[:2] != (h, w):  # the file changed since the scan
            raise DatasetFolderError(f"{f}: {pixels.shape[1]}x{pixels.shape[0]} pixels now, {w}x{h} when scanned")
        images[i] = pixels if c == 1 else pixels.transpose(2, 0, 1)
        progress()
    images.flush()
    digest = arrays_sha256(images, labels)
    with open(folder / f"{split}.npz", "wb") as out:
        np.savez_compressed(out, images=images, labels=labels)  # streamed from the memory map
    del images
    raw.unlink()
    return len(files), digest


def import_folder(path: str | os.PathLike, name: str, title: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Import an ``ImageFolder`` tree as the user data set ``name`` (see the module's doc).

    Parameters
    ----------
    path : the tree's root (``PATH/train/<class>/...``, ``PATH/test/<class>/...``).
    name : the data set's name (``--dataset NAME``): 1-40 lower-case letters, digits, ``-``, ``_``.
    title : for people (default: ``name``).
    progress : called with (images done, images in all) as images are decoded.

    Returns
    -------
    The new data set's entry (as :func:`~trav_gui.engine.data.datasets.get_dataset` returns it).

    Raises
    ------
    DatasetFolderError : the tree or the name is refused (one line naming the file or folder);
        nothing is written then.
    """
    name = _check_name(name)
    title = " ".join(str(title if title is not None else name).split())
    if not 1 <= len(title) <= 64:
        raise DatasetFolderError(f"title {title!r} must be 1-64 characters")
    scan = scan_folder(path)
    home = user_datasets_dir()
    home.mkdir(parents=True, exist_ok=True)
    total = sum(len(scan.files[s]) for s in SPLITS)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=home))
    try:
        counts, digests = {}, {}
        for split in SPLITS:
            _, digests[split] = _write_split(scan, split, tmp, tick)
            counts[split] = scan.counts(split)
        card = DatasetCard(name=name, title=title, shape=scan.shape, class_names=list(scan.class_names),
                           counts=counts, sha256=digests, source=str(scan.root.resolve()),
                           created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                           trav_gui=__version__, format=1)
        write_bytes_atomic(tmp / CARD_FILE, (json.dumps(card.model_dump(mode="json"), indent=2) + "\n").encode())
        try:
            os.rename(tmp, home / name)  # fails if another import took the name meanwhile
        except OSError as exc:
            raise DatasetFolderError(f"cannot keep the data set as {home / name} ({exc.strerror})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        forget_cached()
    return get_dataset(name)


def remove_user_dataset(name: str) -> Path:
    """Delete the user data set ``name`` (its folder); the folder it was imported from is not touched.

    Raises
    ------
    DatasetFolderError : ``name`` is a shipped data set, or no user data set.
    """
    if name in DATASETS:
        raise DatasetFolderError(f"{name!r} is a shipped data set; only user data sets can be removed")
    folder = user_datasets_dir() / str(name)
    known = {**user_datasets(), **user_dataset_problems()}
    if name not in known or folder.is_symlink() or not folder.is_dir():
        raise DatasetFolderError(f"no user data set {name!r}; trav-gui datasets lists them")
    gone = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".removing", dir=folder.parent))
    try:
        os.rename(folder, gone / name)  # out of the listing at once; then deleted
    finally:
        shutil.rmtree(gone, ignore_errors=True)
        forget_cached()
    return folder
