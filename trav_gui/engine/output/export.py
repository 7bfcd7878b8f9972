"""Write a traversal run to disk: the files of an export, and :func:`export_run` for all of them.

One format for the desktop app and the command line: every function takes the stacked
arrays of :func:`trav_gui.engine.core.traversal.stack_frames` (a leading step axis ``T``, then
``M`` models and ``N`` images) plus plain model descriptions, never widgets.

What a run folder holds
-----------------------
``run.json``
    The run record (:mod:`trav_gui.engine.runs.record`): app version, models with their
    sha256, the start image, target, every setting, seed and time. Enough to replay the
    identical run. Written last: its presence means the export is complete.
``manifest.json``
    Every other file this export wrote, as relative paths. Written first; the next export
    into the folder deletes exactly those files before writing its own, so a shorter run
    does not leave a longer run's frames behind.
``steps.csv``
    One row per step and model: ``step, model, p0..p{K-1}, l2, linf, objective`` (with an
    ``image`` column after ``model`` when the run traversed more than one image; with realism
    the judge's probabilities and the nearest-real ratio, in colour worlds colour kept too).
``<model>.npz``
    The frames and numbers of one model: grey frames ``(T, H, W)`` as they always were,
    colour frames ``(T, 3, H, W)``.
``frames/<model>/step_00000.png`` and ``frames_x10/<model>/step_00000.png``
    Every frame of every model (grey or RGB), at its own size and upscaled (nearest
    neighbour, pixel-exact).
``traversal.gif`` (and ``traversal.mp4`` when imageio-ffmpeg is installed)
    All models side by side with the step counter and each model's predicted class.
``strip.png``
    The run at a glance: one row per model, nine evenly spread steps, each with the
    target's probability (what README and papers show).

Every file is written atomically (:mod:`trav_gui.engine.files`), so a file is either
complete or absent, even if the process dies halfway. Pictures are drawn by
:mod:`trav_gui.engine.output.render`.

The run-record, file and rendering names that used to live here are still importable from
this module; new code should import them from their own modules.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import re
import stat
import tempfile  # noqa: F401  (kept as export.tempfile: tests patch tempfile.mkstemp through it)
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from trav_gui.engine.data.datasets import DEFAULT_DATASET, all_datasets, get_dataset
from trav_gui.engine.files import atomic_path, remove_files_inside, safe_relative_parts, save_png, write_bytes_atomic
from trav_gui.engine.output.render import (
    MAX_ANIMATION_FRAMES,
    animation_indices,
    render_side_by_side,
    pixels,
    render_strip,
    upscale,
)
from trav_gui.engine.realism import confident_point, most_realistic_of
from trav_gui.engine.runs.record import RECORD_NAME, validate_run_record, write_run_record

__all__ = [
    "MANIFEST_NAME",
    "MAX_ANIMATION_FRAMES",
    "ExportCancelled",
    "export_run",
    "mp4_available",
    "read_manifest",
    "read_steps_csv",
    "write_animation",
    "write_npz",
    "write_png_frames",
    "write_steps_csv",
    "write_strip",
]

CSV_NAME = "steps.csv"
GIF_NAME = "traversal.gif"
MP4_NAME = "traversal.mp4"
STRIP_NAME = "strip.png"
PNG_SCALE = 10  # frames_x10/
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "trav_gui.export"
# A manifest lists two PNGs per step and model: 10,000 steps of 16 models is about 12 MB.
MAX_MANIFEST_BYTES = 64 << 20
# What an export writes, and so all that a manifest may ask to delete.
_OWNED = re.compile("|".join(map(re.escape, (RECORD_NAME, CSV_NAME, STRIP_NAME, GIF_NAME, MP4_NAME)))
                    + r"|frames(_x[0-9]+)?/[^/]+/step_[0-9]{5,}\.png|[^/]+\.npz")

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called as the export goes; ``done`` counts work units."""


class ExportCancelled(RuntimeError):
    """The export was cancelled; files already complete stay, none is left half-written."""


# ----------------------------------------------------------------------------- arrays


def _check_arrays(arrays: Mapping[str, np.ndarray], model_names: Sequence[str]) -> tuple[int, int, int]:
    images = np.asarray(arrays["images"])
    if not (images.ndim == 5 or (images.ndim == 6 and images.shape[3] == 3)):
        raise ValueError(f"arrays['images'] must be (T, M, N, H, W) or (T, M, N, 3, H, W), got {images.shape}")
    t, m, n = images.shape[:3]
    k = np.shape(arrays["probs"])[-1]
    if len(model_names) != m:
        raise ValueError(f"{len(model_names)} model names for {m} models")
    if len(set(model_names)) != m:
        raise ValueError(f"model names must be distinct: {list(model_names)}")
    for key, shape in (("probs", (t, m, n, k)), ("l2", (t, m, n)), ("linf", (t, m, n)),
                       ("objective", (t, m, n)), ("step", (t,))):
        if np.shape(arrays[key]) != shape:
            raise ValueError(f"arrays[{key!r}] must have shape {shape}, got {np.shape(arrays[key])}")
    return t, m, n


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return cleaned or "model"


def _frame_files(model_name: str, step: int, scale: int) -> tuple[str, str]:
    """Where one frame's PNGs go, relative to the run folder: at its own size and upscaled."""
    name = f"{_safe_name(model_name)}/step_{int(step):05d}.png"
    return f"frames/{name}", f"frames_x{scale}/{name}"


def write_steps_csv(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                    model_names: Sequence[str]) -> Path:
    """One row per step and model: ``step, model, p0..p{K-1}, l2, linf, objective`` (and, when the
    arrays hold realism, ``judge_p0..judge_p{K-1}, nn_ratio``, and in colour worlds
    ``colour_kept, grey_share``; NaN where a frame was not scored).

    Parameters
    ----------
    arrays : output of ``stack_frames``: ``probs`` (T, M, N, K), ``l2``/``linf``/``objective``
        (T, M, N), ``step`` (T,), ``images`` (T, M, N, H, W) or (T, M, N, 3, H, W).
    model_names : M names, in the order of the model axis.

    An ``image`` column follows ``model`` only when N > 1. Floats are written with 9
    significant digits, enough to recover every float32 exactly.
    """
    t, m, n = _check_arrays(arrays, model_names)
    realism = "judge_probs" in arrays and "nn_ratio" in arrays
    colour = realism and "colour_kept" in arrays and "grey_share" in arrays
    k = np.shape(arrays["probs"])[-1]
    header = ["step", "model"] + (["image"] if n > 1 else []) + [f"p{c}" for c in range(k)] + [
        "l2", "linf", "objective"] + ([f"judge_p{c}" for c in range(k)] + ["nn_ratio"] if realism else []) + (
        ["colour_kept", "grey_share"] if colour else [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    probs, l2, linf, obj = (np.asarray(arrays[k]) for k in ("probs", "l2", "linf", "objective"))
    steps = np.asarray(arrays["step"])
    for s in range(t):
        for j, name in enumerate(model_names):
            for i in range(n):
                row = [int(steps[s]), name] + ([i] if n > 1 else [])
                row += [f"{v:.9g}" for v in probs[s, j, i]]
                row += [f"{l2[s, j, i]:.9g}", f"{linf[s, j, i]:.9g}", f"{obj[s, j, i]:.9g}"]
                if realism:
                    row += [f"{v:.9g}" for v in arrays["judge_probs"][s, j, i]]
                    row += [f"{arrays['nn_ratio'][s, j, i]:.9g}"]
                if colour:
                    row += [f"{arrays['colour_kept'][s, j, i]:.9g}", f"{arrays['grey_share'][s, j, i]:.9g}"]
                writer.writerow(row)
    path = Path(path)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return path


def write_npz(folder: str | os.PathLike, arrays: Mapping[str, np.ndarray], model_names: Sequence[str],
              image_index: int = 0) -> list[Path]:
    """Per model, ``<model>.npz``: ``frames`` (T, H, W) grey or (T, 3, H, W) colour, ``probs``
    (T, K), ``l2``, ``linf``, ``objective``, ``step`` (T,), and with realism ``judge_probs``
    (T, K) and ``nn_ratio`` (T,), in colour worlds also ``colour_kept`` and ``grey_share`` (T,)."""
    _check_arrays(arrays, model_names)
    folder = Path(folder)
    keys = {"frames": "images", "probs": "probs", "l2": "l2", "linf": "linf", "objective": "objective",
            **({"judge_probs": "judge_probs", "nn_ratio": "nn_ratio"} if "nn_ratio" in arrays else {}),
            **({"colour_kept": "colour_kept", "grey_share": "grey_share"} if "colour_kept" in arrays else {})}
    written = []
    for j, name in enumerate(model_names):
        fields = {k: np.asarray(arrays[src])[:, j, image_index] for k, src in keys.items()}
        buf = io.BytesIO()
        np.savez_compressed(buf, step=np.asarray(arrays["step"]), **fields)
        path = folder / f"{_safe_name(name)}.npz"
        write_bytes_atomic(path, buf.getvalue())
        written.append(path)
    return written


def write_png_frames(folder: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                     model_names: Sequence[str], scale: int = PNG_SCALE, image_index: int = 0,
                     progress: Progress | None = None, cancel: Callable[[], bool] | None = None
                     ) -> list[Path]:
    """Every frame of every model as PNG: ``frames/<model>/step_00000.png`` (the image's own
    size; grey or RGB) and ``frames_x{scale}/<model>/...`` (upscaled by nearest neighbour).

    Pixel value v in [0, 1] is stored as round(255 v), 0 = black background.
    """
    t, m, n = _check_arrays(arrays, model_names)
    folder = Path(folder)
    images = np.asarray(arrays["images"])[:, :, image_index]
    steps = np.asarray(arrays["step"])
    written = []
    for j, name in enumerate(model_names):
        for s in range(t):
            if cancel is not None and cancel():
                raise ExportCancelled("export cancelled")
            px = pixels(images[s, j])
            small, big = (folder / rel for rel in _frame_files(name, steps[s], scale))
            save_png(small, px)
            save_png(big, upscale(px, scale))
            written += [small, big]
            if progress is not None:
                progress(j * t + s + 1, m * t, f"PNG frames of {name}")
    return written


def write_strip(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                model_names: Sequence[str], target: int, image_index: int = 0,
                columns: int = 9, scale: int = 3, title: str | None = None,
                target_name: str | None = None) -> Path:
    """Save :func:`render_strip` of one image of a run as PNG (atomically); the confident
    point and, with realism in ``arrays``, the most realistic frame of each model are marked."""
    _check_arrays(arrays, model_names)
    path = Path(path)
    probs = np.asarray(arrays["probs"])[:, :, image_index]
    ratio = np.asarray(arrays["nn_ratio"])[:, :, image_index] if "nn_ratio" in arrays else None
    l2 = np.asarray(arrays["l2"])[:, :, image_index] if "l2" in arrays else None
    marks = []
    for j in range(len(model_names)):
        at = confident_point(probs[:, j], target)
        best = (most_realistic_of(probs[:, j], ratio[:, j], target, None if l2 is None else l2[:, j])
                if ratio is not None else None)
        marks.append({**({best: "most realistic"} if best is not None else {}),
                      **({at: "confident" if best != at else "confident = most real"} if at is not None else {})})
    pixels = render_strip(np.asarray(arrays["images"])[:, :, image_index], probs,
                          [int(s) for s in np.asarray(arrays["step"])], model_names, target,
                          columns, scale, title, marks, target_name)
    return save_png(path, pixels)


def mp4_available() -> bool:
    """True when imageio-ffmpeg is importable, so MP4 can be written."""
    try:
        import imageio_ffmpeg  # noqa: F401  (lazy: the optional video extra)
    except ImportError:
        return False
    return True


def write_animation(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                    model_names: Sequence[str], target: int, fps: float = 20.0, scale: int = 8,
                    image_index: int = 0, progress: Progress | None = None,
                    cancel: Callable[[], bool] | None = None, class_names: Sequence[str] | None = None) -> Path:
    """A side-by-side animation of all models, as GIF (or MP4 if ``path`` ends in ``.mp4``).

    At most :data:`MAX_ANIMATION_FRAMES` steps are drawn (evenly spread, first and last
    always); the last frame is held for two seconds. MP4 needs imageio-ffmpeg.
    """
    t, m, n = _check_arrays(arrays, model_names)
    path = Path(path)
    images = np.asarray(arrays["images"])[:, :, image_index]
    probs = np.asarray(arrays["probs"])[:, :, image_index]
    steps = np.asarray(arrays["step"])
    idx = animation_indices(t)
    frames = []
    for k, s in enumerate(idx):
        if cancel is not None and cancel():
            raise ExportCancelled("export cancelled")
        frames.append(render_side_by_side(images[s], probs[s], model_names, int(steps[s]), target, scale,
                                          class_names))
        if progress is not None:
            progress(k + 1, len(idx), f"animation {path.name}")
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio  # lazy: MP4 only, which needs the optional video extra

        hold = [frames[-1]] * int(2 * fps)
        with atomic_path(path) as tmp:
            # macro_block_size=1: frame sizes are not multiples of 16.
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264",
                                    macro_block_size=1, pixelformat="yuv420p") as writer:
                for f in frames + hold:
                    writer.append_data(f)
        return path
    duration = int(round(1000 / fps))
    pil = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], loop=0,
                    duration=[duration] * (len(pil) - 1) + [2000], optimize=False)
    return path


# ----------------------------------------------------------------------------- manifest


def read_manifest(folder: str | os.PathLike) -> list[str]:
    """The files an earlier export into ``folder`` wrote, from its ``manifest.json``.

    Returns an empty list, so that nothing is deleted, unless the manifest is a regular
    file (not a symlink) of at most :data:`MAX_MANIFEST_BYTES` holding our format, and every
    name in it is a plain relative path of a kind an export writes (``run.json``,
    ``steps.csv``, ``frames/<model>/step_00000.png``, ...): a single ``..``, absolute path
    or foreign name makes the whole manifest untrusted.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        # O_NONBLOCK: a FIFO named manifest.json must not hang the export.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        with open(os.open(path, flags), "rb") as f:
            if path.is_symlink() or not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return []
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            return []
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, a link, not UTF-8, not JSON
        return []
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return []
    files = data.get("files")
    if not isinstance(files, list) or not all(
            safe_relative_parts(name) is not None and _OWNED.fullmatch(name) for name in files):
        return []
    return list(files)


def _write_manifest(folder: Path, names: Sequence[str]) -> Path:
    data = {"format": MANIFEST_FORMAT, "format_version": 1, "files": list(names)}
    return write_bytes_atomic(folder / MANIFEST_NAME, (json.dumps(data, indent=0) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------------- everything


def export_run(folder: str | os.PathLike, record: dict, arrays: Mapping[str, np.ndarray],
               model_names: Sequence[str] | None = None, *, png: bool = True, gif: bool = True,
               mp4: bool | None = None, progress: Progress | None = None,
               cancel: Callable[[], bool] | None = None) -> list[Path]:
    """Write a whole run into ``folder``: run record, CSV, PNG frames, GIF (and MP4).

    Parameters
    ----------
    folder : created if missing. The files an earlier export listed in its
        ``manifest.json`` are deleted first (see :func:`read_manifest`); nothing else is.
    record : from :func:`build_run_record`; its models name the model axis of ``arrays``.
    arrays : output of ``stack_frames`` (or the same keys and shapes).
    model_names : names for files and captions; the record's model names when None.
    png, gif : write the PNG frames / the GIF (``strip.png`` is always written).
    mp4 : write an MP4 too; None means "if imageio-ffmpeg is installed".
    progress : ``progress(done, total, what)`` with ``done`` counting to ``total`` overall.
    cancel : polled between files; when it returns True, :class:`ExportCancelled` is raised.

    Returns
    -------
    The paths written: the manifest first, the run record last (so its presence means the
    export finished).

    Raises
    ------
    OSError : a file could not be written (read-only folder, disk full, folder deleted
        meanwhile). Every file is complete or absent; the folder has no ``run.json``, so it
        does not pass for a finished export, and calling again writes it all afresh.
    ExportCancelled : ``cancel`` returned True.
    """
    parsed = validate_run_record(record)
    names = list(model_names) if model_names is not None else [m.name for m in parsed.models]
    t, m, n = _check_arrays(arrays, names)
    if m != len(parsed.models):
        raise ValueError(f"the record names {len(parsed.models)} models, the arrays hold {m}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # An older export in the same folder loses its record first: from here on, run.json
    # present means "this folder holds one complete export", even if this one fails halfway.
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD_NAME).unlink()
    if mp4 is None:
        mp4 = mp4_available()
    # Then the older export's files go, and this one's manifest is written before any of
    # its files: whatever this export leaves, even cancelled or failed, the next one removes.
    remove_files_inside(folder, read_manifest(folder))
    steps = np.asarray(arrays["step"])
    frames = [rel for name in names for s in steps for rel in _frame_files(name, s, PNG_SCALE)] if png else []
    planned = [CSV_NAME, *(f"{_safe_name(n)}.npz" for n in names), STRIP_NAME, *frames, *([GIF_NAME] if gif else []), *([MP4_NAME] if mp4 else []),
               RECORD_NAME]
    written: list[Path] = [_write_manifest(folder, list(dict.fromkeys(planned)))]

    n_anim = len(animation_indices(t))
    parts = [("csv", 1, True), ("strip", 1, True), ("png", m * t, png), ("gif", n_anim, gif), ("mp4", n_anim, mp4),
             ("record", 1, True)]
    total = sum(size for _, size, on in parts if on)
    done = 0

    def sub(offset: int) -> Progress:
        return lambda d, _t, what: progress(offset + d, total, what) if progress else None

    written.append(write_steps_csv(folder / CSV_NAME, arrays, names))
    written += write_npz(folder, arrays, names)
    done += 1
    if progress:
        progress(done, total, CSV_NAME)
    dataset = (record.get("extra") or {}).get("dataset") or DEFAULT_DATASET
    class_names = get_dataset(dataset).class_names if dataset in all_datasets() else None
    target_name = get_dataset(dataset).short(parsed.target) if class_names else None
    written.append(write_strip(folder / STRIP_NAME, arrays, names, parsed.target, target_name=target_name))
    done += 1
    if progress:
        progress(done, total, STRIP_NAME)
    if png:
        written += write_png_frames(folder, arrays, names, scale=PNG_SCALE, progress=sub(done), cancel=cancel)
        done += m * t
    if gif:
        written.append(write_animation(folder / GIF_NAME, arrays, names, parsed.target,
                                       progress=sub(done), cancel=cancel, class_names=class_names))
        done += n_anim
    if mp4:
        written.append(write_animation(folder / MP4_NAME, arrays, names, parsed.target,
                                       progress=sub(done), cancel=cancel, class_names=class_names))
        done += n_anim
    if cancel is not None and cancel():
        raise ExportCancelled("export cancelled")
    # Writes recreate missing folders, so a folder deleted mid-export would otherwise end
    # with a record that claims files which are gone.
    gone = [p for p in written if not p.is_file()]
    if gone:
        raise FileNotFoundError(
            errno.ENOENT, f"{len(gone)} exported files vanished while exporting (the folder was "
            f"moved or deleted?), e.g. {gone[0]}; export again", str(gone[0]))
    written.append(write_run_record(folder / RECORD_NAME, record))
    done += 1
    if progress:
        progress(done, total, RECORD_NAME)
    return written


def read_steps_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``steps.csv`` as dicts (numbers parsed), for tests and analysis."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed: dict = {}
        for k, v in row.items():
            if k == "model":
                parsed[k] = v
            elif k in ("step", "image"):
                parsed[k] = int(v)
            else:
                parsed[k] = float(v)
                if not math.isfinite(parsed[k]) and not k.startswith(("judge_", "nn_")):
                    raise ValueError(f"{path}: non-finite {k} in step {row.get('step')}")
        out.append(parsed)
    return out
