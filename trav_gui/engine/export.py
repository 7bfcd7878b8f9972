"""Write a traversal run to disk, and read its run record back.

One format for the desktop app and the command line: every function takes the stacked
arrays of :func:`trav_gui.engine.traversal.stack_frames` (a leading step axis ``T``, then
``M`` models and ``N`` images) plus plain model descriptions, never widgets.

What a run folder holds
-----------------------
``run.json``
    The run record (:func:`build_run_record`): app version, models with their sha256, the
    start image (28×28 values, and its MNIST test index if it was picked), target, every
    :class:`~trav_gui.engine.traversal.TraversalConfig` setting, seed and time. Enough to
    replay the identical run.
``steps.csv``
    One row per step and model: ``step, model, p0..p9, l2, linf, objective`` (with an
    ``image`` column after ``model`` when the run traversed more than one image).
``frames/<model>/step_00000.png`` and ``frames_x10/<model>/step_00000.png``
    Every frame of every model, 28×28 and upscaled (nearest neighbour, pixel-exact).
``traversal.gif`` (and ``traversal.mp4`` when imageio-ffmpeg is installed)
    All models side by side with the step counter and each model's predicted class.
``strip.png``
    The run at a glance: one row per model, nine evenly spread steps, each with the
    target's probability (what README and papers show).

Every file is written to a temporary name in its folder and renamed into place, so a file
is either complete or absent, even if the process dies halfway.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trav_gui import __version__
from trav_gui.engine.traversal import TraversalConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ExportCancelled",
    "ModelRef",
    "RunRecord",
    "RunRecordError",
    "atomic_path",
    "build_run_record",
    "export_run",
    "mp4_available",
    "read_run_record",
    "read_steps_csv",
    "render_side_by_side",
    "render_strip",
    "save_png",
    "validate_run_record",
    "write_animation",
    "write_png_frames",
    "write_run_record",
    "write_steps_csv",
    "write_strip",
]

FORMAT = "trav_gui.run"
FORMAT_VERSION = 1
RECORD_NAME = "run.json"
CSV_NAME = "steps.csv"
GIF_NAME = "traversal.gif"
MP4_NAME = "traversal.mp4"
STRIP_NAME = "strip.png"
# A GIF of every step of a 10,000-step run would be hundreds of megabytes; the animation
# keeps at most this many steps, evenly spread, always with the first and the last.
MAX_ANIMATION_FRAMES = 400
# A run record is about 20 kB (784 pixels and a few settings); anything far larger is not
# one of ours, and reading it whole could exhaust memory.
MAX_RECORD_BYTES = 4 << 20
MAX_RECORD_MODELS = 16
MAX_TEXT_CHARS = 4096

Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called as the export goes; ``done`` counts work units."""


class RunRecordError(ValueError):
    """A run record that cannot be read or replayed; the message says which field and why."""


class ExportCancelled(RuntimeError):
    """The export was cancelled; files already complete stay, none is left half-written."""


@dataclass(frozen=True)
class ModelRef:
    """A model as a run record names it.

    Parameters
    ----------
    name : the model's display name (the file stem for cards in a models folder).
    sha256 : hex digest of the weights file; what a replay matches models by.
    path : where the weights were, for the user's information only.
    """

    name: str
    sha256: str
    path: str | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "sha256": self.sha256}
        if self.path is not None:
            out["path"] = self.path
        return out


@dataclass(frozen=True)
class RunRecord:
    """A validated run record.

    Attributes
    ----------
    models : the models, in column order.
    start_image : (28, 28) float32 in [0, 1], exactly the image the run started from.
    mnist_index : index into the shipped MNIST test digits, or None for a drawing.
    target : int in 0..9.
    config : the run's :class:`TraversalConfig` (its ``seed`` seeds the run).
    app_version, created : who wrote it and when (ISO 8601, UTC).
    raw : the record as read, including any fields this version does not know.
    """

    models: tuple[ModelRef, ...]
    start_image: np.ndarray
    mnist_index: int | None
    target: int
    config: TraversalConfig
    app_version: str
    created: str
    raw: dict = field(repr=False, compare=False)


# ----------------------------------------------------------------------------- atomic files

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give it the mode any new file would get.
    os.chmod(tmp_path, 0o666 & ~_UMASK)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# ----------------------------------------------------------------------------- run record


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_run_record(
    models: Sequence[ModelRef],
    start_image: np.ndarray,
    target: int,
    config: TraversalConfig,
    mnist_index: int | None = None,
    created: str | None = None,
    extra: Mapping | None = None,
) -> dict:
    """The JSON-ready run record of one traversal.

    Parameters
    ----------
    models : the models in column order, with the sha256 of their weights.
    start_image : (28, 28) float in [0, 1]; stored as float32 values, which JSON round-trips
        exactly.
    target : int in 0..9.
    config : every setting of the run, seed included.
    mnist_index : the shipped MNIST test digit the start came from, or None.
    created : ISO 8601 time; now (UTC) when None.
    extra : more JSON-ready fields to store under ``"extra"`` (device, a summary, ...).

    Returns
    -------
    dict, validated by :func:`validate_run_record`.
    """
    image = np.asarray(start_image, dtype=np.float32)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "app_version": __version__,
        "created": created or _utc_now(),
        "models": [m.to_dict() for m in models],
        "start": {
            "image": image.tolist(),
            "mnist_index": None if mnist_index is None else int(mnist_index),
            "source": "mnist_test" if mnist_index is not None else "drawing",
        },
        "target": int(target),
        "config": config.to_dict(),
        "seed": int(config.seed),
        "mode": "traversal" if config.eps is None else "pgd",
    }
    if extra:
        record["extra"] = dict(extra)
    validate_run_record(record)
    return record


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise RunRecordError(message)


def validate_run_record(data: object) -> RunRecord:
    """Check a run record (parsed JSON) field by field.

    Returns
    -------
    RunRecord

    Raises
    ------
    RunRecordError : naming the first field that is missing or wrong.
    """
    _require(isinstance(data, dict), "a run record must be a JSON object")
    assert isinstance(data, dict)
    _require(data.get("format") == FORMAT,
             f"not a run record: 'format' is {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("format_version")
    _require(isinstance(version, int) and not isinstance(version, bool),
             "'format_version' must be an integer")
    _require(version <= FORMAT_VERSION,
             f"run record format {version} is newer than this app understands ({FORMAT_VERSION}); "
             "update trav-gui")

    models = data.get("models")
    _require(isinstance(models, list) and len(models) >= 1, "'models' must be a non-empty list")
    _require(len(models) <= MAX_RECORD_MODELS,
             f"'models' lists {len(models)} models; a run compares at most {MAX_RECORD_MODELS}")
    refs = []
    for i, m in enumerate(models):
        _require(isinstance(m, dict), f"models[{i}] must be an object")
        name, sha = m.get("name"), m.get("sha256")
        _require(isinstance(name, str) and 0 < len(name) <= 200,
                 f"models[{i}].name must be a non-empty string of at most 200 characters")
        _require(isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha),
                 f"models[{i}].sha256 must be 64 lowercase hex digits")
        path = m.get("path")
        _require(path is None or (isinstance(path, str) and len(path) <= MAX_TEXT_CHARS),
                 f"models[{i}].path must be a string of at most {MAX_TEXT_CHARS} characters")
        refs.append(ModelRef(name, sha, path))

    start = data.get("start")
    _require(isinstance(start, dict), "'start' must be an object")
    rows = start.get("image")
    # Check the nesting and the element types before numpy sees them: numpy would turn
    # strings such as "0.5" and booleans into numbers without a word.
    _require(isinstance(rows, list) and len(rows) == 28
             and all(isinstance(r, list) and len(r) == 28 for r in rows),
             f"start.image must be 28×28, got {_describe_shape(rows)}")
    _require(all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for v in r),
             "start.image must hold numbers only")
    image = np.asarray(rows, dtype=np.float32)
    _require(bool(np.isfinite(image).all()), "start.image contains NaN or inf")
    _require(image.min() >= 0 and image.max() <= 1, "start.image values must lie in [0, 1]")
    index = start.get("mnist_index")
    _require(index is None or (isinstance(index, int) and not isinstance(index, bool) and index >= 0),
             "start.mnist_index must be null or a non-negative integer")

    target = data.get("target")
    _require(isinstance(target, int) and not isinstance(target, bool) and 0 <= target <= 9,
             f"'target' must be an integer 0..9, got {target!r}")

    cfg = data.get("config")
    _require(isinstance(cfg, dict), "'config' must be an object")
    try:
        config = TraversalConfig.from_dict(cfg)
    except (TypeError, ValueError) as exc:
        raise RunRecordError(f"config: {exc}") from None
    if "seed" in data:
        _require(data["seed"] == config.seed, "'seed' disagrees with config.seed")

    for key in ("app_version", "created"):
        _require(data.get(key) is None or (isinstance(data[key], str) and len(data[key]) <= 200),
                 f"'{key}' must be a string of at most 200 characters")

    image.flags.writeable = False
    return RunRecord(
        models=tuple(refs),
        start_image=image,
        mnist_index=index,
        target=target,
        config=config,
        app_version=data.get("app_version") or "?",
        created=data.get("created") or "",
        raw=data,
    )


def _describe_shape(value: object) -> str:
    if not isinstance(value, list):
        return f"a {type(value).__name__}"
    inner = {len(r) if isinstance(r, list) else type(r).__name__ for r in value[:64]}
    return f"{len(value)} rows of {', '.join(map(str, sorted(inner, key=str))) or 'nothing'}"


def write_run_record(path: str | os.PathLike, record: dict) -> Path:
    """Validate ``record`` and write it as JSON to ``path`` (atomically)."""
    validate_run_record(record)
    path = Path(path)
    _write_bytes_atomic(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    return path


def read_run_record(path: str | os.PathLike) -> RunRecord:
    """Read and validate a run record; a run folder means its ``run.json``.

    Raises
    ------
    RunRecordError : unreadable file, not JSON, or a record that fails validation.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
        if len(raw) > MAX_RECORD_BYTES:
            raise RunRecordError(f"{path.name}: too large for a run record "
                                 f"(over {MAX_RECORD_BYTES >> 20} MiB); not read")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRecordError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunRecordError(f"{path.name}: not JSON ({exc})") from None
    except RecursionError:
        raise RunRecordError(f"{path.name}: JSON nested too deeply to be a run record") from None
    try:
        return validate_run_record(data)
    except RunRecordError as exc:
        raise RunRecordError(f"{path.name}: {exc}") from None


# ----------------------------------------------------------------------------- arrays


def _check_arrays(arrays: Mapping[str, np.ndarray], model_names: Sequence[str]) -> tuple[int, int, int]:
    images = np.asarray(arrays["images"])
    if images.ndim != 5 or images.shape[-2:] != (28, 28):
        raise ValueError(f"arrays['images'] must be (T, M, N, 28, 28), got {images.shape}")
    t, m, n = images.shape[:3]
    if len(model_names) != m:
        raise ValueError(f"{len(model_names)} model names for {m} models")
    if len(set(model_names)) != m:
        raise ValueError(f"model names must be distinct: {list(model_names)}")
    for key, shape in (("probs", (t, m, n, 10)), ("l2", (t, m, n)), ("linf", (t, m, n)),
                       ("objective", (t, m, n)), ("step", (t,))):
        if np.shape(arrays[key]) != shape:
            raise ValueError(f"arrays[{key!r}] must have shape {shape}, got {np.shape(arrays[key])}")
    return t, m, n


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return cleaned or "model"


def write_steps_csv(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                    model_names: Sequence[str]) -> Path:
    """One row per step and model: ``step, model, p0..p9, l2, linf, objective``.

    Parameters
    ----------
    arrays : output of ``stack_frames``: ``probs`` (T, M, N, 10), ``l2``/``linf``/``objective``
        (T, M, N), ``step`` (T,), ``images`` (T, M, N, 28, 28).
    model_names : M names, in the order of the model axis.

    An ``image`` column follows ``model`` only when N > 1. Floats are written with 9
    significant digits, enough to recover every float32 exactly.
    """
    t, m, n = _check_arrays(arrays, model_names)
    header = ["step", "model"] + (["image"] if n > 1 else []) + [f"p{c}" for c in range(10)] + [
        "l2", "linf", "objective"]
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
                writer.writerow(row)
    path = Path(path)
    _write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return path


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray | Image.Image) -> Path:
    """Write ``image`` (uint8 pixels, or a PIL image) as PNG, atomically."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    with atomic_path(path) as tmp:
        pil.save(tmp, format="PNG")
    return path


def write_png_frames(folder: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                     model_names: Sequence[str], scale: int = 10, image_index: int = 0,
                     progress: Progress | None = None, cancel: Callable[[], bool] | None = None
                     ) -> list[Path]:
    """Every frame of every model as PNG: ``frames/<model>/step_00000.png`` (28×28) and
    ``frames_x{scale}/<model>/...`` (upscaled by nearest neighbour).

    Pixel value v in [0, 1] is stored as round(255 v), 0 = black background.
    """
    t, m, n = _check_arrays(arrays, model_names)
    folder = Path(folder)
    images = np.asarray(arrays["images"])[:, :, image_index]
    steps = np.asarray(arrays["step"])
    written = []
    for j, name in enumerate(model_names):
        small_dir = folder / "frames" / _safe_name(name)
        big_dir = folder / f"frames_x{scale}" / _safe_name(name)
        for s in range(t):
            if cancel is not None and cancel():
                raise ExportCancelled("export cancelled")
            px = _to_uint8(images[s, j])
            fname = f"step_{int(steps[s]):05d}.png"
            save_png(small_dir / fname, px)
            save_png(big_dir / fname, np.kron(px, np.ones((scale, scale), np.uint8)))
            written += [small_dir / fname, big_dir / fname]
            if progress is not None:
                progress(j * t + s + 1, m * t, f"PNG frames of {name}")
    return written


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def render_side_by_side(images: np.ndarray, probs: np.ndarray, model_names: Sequence[str],
                        step: int, target: int, scale: int = 8) -> np.ndarray:
    """One animation frame: the models' images side by side with captions.

    Parameters
    ----------
    images : (M, 28, 28) float in [0, 1].
    probs : (M, 10) class probabilities.
    model_names : M names.
    step, target : shown in the footer.
    scale : upscaling of each 28×28 image (nearest neighbour).

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    m = images.shape[0]
    side = 28 * scale
    pad, head, foot = 8, 38, 26
    width = m * side + (m + 1) * pad
    height = head + side + foot
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for j in range(m):
        x = pad + j * (side + pad)
        tile = Image.fromarray(np.kron(_to_uint8(images[j]), np.ones((scale, scale), np.uint8)))
        canvas.paste(tile.convert("RGB"), (x, head))
        pred = int(np.argmax(probs[j]))
        hit = pred == target
        draw.text((x, 3), str(model_names[j]), fill=(230, 230, 230), font=font)
        draw.text((x, 20), f"predicts {pred} ({100 * float(probs[j, pred]):.1f}%)",
                  fill=(120, 220, 120) if hit else (240, 170, 90), font=font)
    draw.text((pad, head + side + 5), f"step {step}    target {target}", fill=(230, 230, 230), font=font)
    return np.asarray(canvas)


def render_strip(images: np.ndarray, probs: np.ndarray, steps: Sequence[int],
                 model_names: Sequence[str], target: int, columns: int = 9, scale: int = 3,
                 title: str | None = None) -> np.ndarray:
    """A still summary of a run: one row per model, ``columns`` evenly spread steps.

    Parameters
    ----------
    images : (T, M, 28, 28) float in [0, 1], the frames of one image.
    probs : (T, M, 10) class probabilities.
    steps : (T,) step numbers.
    model_names : M row labels.
    target : the class whose probability is written under each frame.
    columns : frames per row (first and last step always shown).
    scale : upscaling of each 28×28 frame (nearest neighbour).
    title : optional line above the grid.

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    t, m = images.shape[:2]
    idx = _animation_indices(t, columns)
    side, pad, label_w = 28 * scale, 6, 96
    head = 22 + (20 if title else 0)
    cap = 16
    width = label_w + len(idx) * (side + pad) + pad
    height = head + m * (side + cap + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    if title:
        draw.text((pad, 4), title, fill=(0, 0, 0), font=_font(14))
    for k, s in enumerate(idx):
        x = label_w + pad + k * (side + pad)
        draw.text((x, head - 18), f"step {int(steps[s])}", fill=(80, 80, 80), font=font)
    for j in range(m):
        y = head + j * (side + cap + pad)
        draw.text((pad, y + side // 2 - 7), str(model_names[j]), fill=(0, 0, 0), font=_font(14))
        for k, s in enumerate(idx):
            x = label_w + pad + k * (side + pad)
            tile = Image.fromarray(np.kron(_to_uint8(images[s, j]), np.ones((scale, scale), np.uint8)))
            canvas.paste(tile.convert("RGB"), (x, y))
            pred = int(np.argmax(probs[s, j]))
            colour = (0, 130, 0) if pred == target else (90, 90, 90)
            draw.text((x, y + side + 1), f"p({target}) {float(probs[s, j, target]):.2f}",
                      fill=colour, font=font)
    return np.asarray(canvas)


def write_strip(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                model_names: Sequence[str], target: int, image_index: int = 0,
                columns: int = 9, scale: int = 3, title: str | None = None) -> Path:
    """Save :func:`render_strip` of one image of a run as PNG (atomically)."""
    _check_arrays(arrays, model_names)
    path = Path(path)
    pixels = render_strip(np.asarray(arrays["images"])[:, :, image_index],
                          np.asarray(arrays["probs"])[:, :, image_index],
                          [int(s) for s in np.asarray(arrays["step"])], model_names, target,
                          columns, scale, title)
    return save_png(path, pixels)


def _animation_indices(t: int, limit: int = MAX_ANIMATION_FRAMES) -> np.ndarray:
    if t <= limit:
        return np.arange(t)
    return np.unique(np.round(np.linspace(0, t - 1, limit)).astype(int))


def mp4_available() -> bool:
    """True when imageio-ffmpeg is importable, so MP4 can be written."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_animation(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                    model_names: Sequence[str], target: int, fps: float = 20.0, scale: int = 8,
                    image_index: int = 0, progress: Progress | None = None,
                    cancel: Callable[[], bool] | None = None) -> Path:
    """A side-by-side animation of all models, as GIF (or MP4 if ``path`` ends in ``.mp4``).

    At most :data:`MAX_ANIMATION_FRAMES` steps are drawn (evenly spread, first and last
    always); the last frame is held for two seconds. MP4 needs imageio-ffmpeg.
    """
    t, m, n = _check_arrays(arrays, model_names)
    path = Path(path)
    images = np.asarray(arrays["images"])[:, :, image_index]
    probs = np.asarray(arrays["probs"])[:, :, image_index]
    steps = np.asarray(arrays["step"])
    idx = _animation_indices(t)
    frames = []
    for k, s in enumerate(idx):
        if cancel is not None and cancel():
            raise ExportCancelled("export cancelled")
        frames.append(render_side_by_side(images[s], probs[s], model_names, int(steps[s]), target, scale))
        if progress is not None:
            progress(k + 1, len(idx), f"animation {path.name}")
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

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


# ----------------------------------------------------------------------------- everything


def export_run(folder: str | os.PathLike, record: dict, arrays: Mapping[str, np.ndarray],
               model_names: Sequence[str] | None = None, *, png: bool = True, gif: bool = True,
               mp4: bool | None = None, progress: Progress | None = None,
               cancel: Callable[[], bool] | None = None) -> list[Path]:
    """Write a whole run into ``folder``: run record, CSV, PNG frames, GIF (and MP4).

    Parameters
    ----------
    folder : created if missing.
    record : from :func:`build_run_record`; its models name the model axis of ``arrays``.
    arrays : output of ``stack_frames`` (or the same keys and shapes).
    model_names : names for files and captions; the record's model names when None.
    png, gif : write the PNG frames / the GIF (``strip.png`` is always written).
    mp4 : write an MP4 too; None means "if imageio-ffmpeg is installed".
    progress : ``progress(done, total, what)`` with ``done`` counting to ``total`` overall.
    cancel : polled between files; when it returns True, :class:`ExportCancelled` is raised.

    Returns
    -------
    The paths written, the run record last (so its presence means the export finished).

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
    n_anim = len(_animation_indices(t))
    parts = [("csv", 1, True), ("strip", 1, True), ("png", m * t, png), ("gif", n_anim, gif), ("mp4", n_anim, mp4),
             ("record", 1, True)]
    total = sum(size for _, size, on in parts if on)
    done = 0

    def sub(offset: int) -> Progress:
        return lambda d, _t, what: progress(offset + d, total, what) if progress else None

    written: list[Path] = []
    written.append(write_steps_csv(folder / CSV_NAME, arrays, names))
    done += 1
    if progress:
        progress(done, total, CSV_NAME)
    written.append(write_strip(folder / STRIP_NAME, arrays, names, parsed.target))
    done += 1
    if progress:
        progress(done, total, STRIP_NAME)
    if png:
        written += write_png_frames(folder, arrays, names, progress=sub(done), cancel=cancel)
        done += m * t
    if gif:
        written.append(write_animation(folder / GIF_NAME, arrays, names, parsed.target,
                                       progress=sub(done), cancel=cancel))
        done += n_anim
    if mp4:
        written.append(write_animation(folder / MP4_NAME, arrays, names, parsed.target,
                                       progress=sub(done), cancel=cancel))
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
                if not math.isfinite(parsed[k]):
                    raise ValueError(f"{path}: non-finite {k} in step {row.get('step')}")
        out.append(parsed)
    return out
