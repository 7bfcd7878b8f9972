"""Files that are complete or absent: atomic writes, and removing what an export owned.

Every file is written to a temporary name in its folder and renamed into place, so a file
is either complete or absent, even if the process dies halfway.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

__all__ = ["atomic_path", "atomic_paths", "remove_files_inside", "safe_relative_parts", "save_png", "sha256_of",
           "write_bytes_atomic"]

# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """:func:`atomic_path` for files that belong together (weights and their card): a temporary
    path beside each, all renamed into place, in order, only if the block succeeds."""
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
            # mkstemp makes the file private (0600); give it the mode any new file would get.
            os.chmod(tmp, 0o666 & ~_UMASK)
        yield tuple(tmps)
        for tmp, path in zip(tmps, targets):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:  # those not renamed: an exception came first
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def save_png(path: str | os.PathLike, image: np.ndarray | Image.Image) -> Path:
    """Write ``image`` (uint8 pixels, or a PIL image) as PNG, atomically."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return path


# ----------------------------------------------------------------------------- removing


def safe_relative_parts(name: object) -> tuple[str, ...] | None:
    """The parts of ``name`` if it is a plain relative POSIX path inside a folder, else None.

    Refused: non-strings, absolute paths, ``..`` and ``.`` parts, empty parts, backslashes,
    drive letters (``:``) and NUL, so the path cannot leave the folder on any system.
    """
    if not isinstance(name, str) or not name or any(c in name for c in "\\:\0"):
        return None
    if name.startswith("/") or "//" in name or name.endswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(p in ("", ".", "..") for p in parts) or "/".join(parts) != name:
        return None
    return parts


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_HAVE_DIR_FD = {os.open, os.stat, os.unlink, os.rmdir} <= os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")


def _open_parent(folder: Path, parts: tuple[str, ...]) -> int:
    # Walk down with O_NOFOLLOW, one directory at a time: a symlink anywhere on the way
    # (even one swapped in meanwhile) stops the walk instead of leading out of the folder.
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))  # the folder itself may be a link
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent_by_path(folder: Path, parts: tuple[str, ...]) -> Path | None:
    # Without dir_fd (Windows): refuse if any folder on the way is a link or a junction.
    path = folder
    for part in parts[:-1]:
        path = path / part
        if path.is_symlink() or getattr(path, "is_junction", lambda: False)() or not path.is_dir():
            return None
    return path


def _remove(folder: Path, parts: tuple[str, ...], is_dir: bool) -> bool:
    """Remove ``folder/parts`` if it is a regular file (``is_dir``: an empty folder)."""
    fd = None
    try:
        if _HAVE_DIR_FD:
            fd = _open_parent(folder, parts)
            where, at = parts[-1], {"dir_fd": fd}
        else:
            parent = _parent_by_path(folder, parts)
            if parent is None:
                return False
            where, at = str(parent / parts[-1]), {}
        mode = os.stat(where, follow_symlinks=False, **at).st_mode
        if is_dir and stat.S_ISDIR(mode):
            os.rmdir(where, **at)
        elif not is_dir and stat.S_ISREG(mode):
            os.unlink(where, **at)
        else:
            return False
        return True
    except OSError:  # gone already, not empty, a link on the way: not ours to remove
        return False
    finally:
        if fd is not None:
            os.close(fd)


def remove_files_inside(folder: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Delete the plain files ``names`` (relative POSIX paths) inside ``folder``.

    A name that is not a plain relative path (see :func:`safe_relative_parts`), that is a
    symlink, a folder or anything but a regular file, or that lies beyond a symlinked folder
    is left alone, as is a file that is already gone. Folders that the deletions leave
    empty are removed too, up to (not including) ``folder``.

    Returns
    -------
    The names deleted.
    """
    folder = Path(folder)
    removed, parents = [], set()
    for name in names:
        parts = safe_relative_parts(name)
        if parts is not None and _remove(folder, parts, is_dir=False):
            removed.append(name)
            parents.update(parts[:k] for k in range(1, len(parts)))
    for parts in sorted(parents, key=len, reverse=True):  # deepest first
        _remove(folder, parts, is_dir=True)
    return removed


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
