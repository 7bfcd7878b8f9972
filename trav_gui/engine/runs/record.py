"""The run record (``run.json``): what a traversal was, exactly enough to replay it.

A run record names the app version, the models with the sha256 of their weights, the
start image (its pixel values: H×W for grey worlds, 3×H×W for colour ones, and its index among the
data set's test images if it was picked), the target, every
:class:`~trav_gui.engine.core.traversal.TraversalConfig` setting, the seed and the time.

Records come from other people (File → Open run…), so :func:`validate_run_record` checks
every field with a strict pydantic model before anything uses it: booleans are not
integers, strings are not numbers, NaN and inf are refused, and the error names the field
(``start.image``, ``models[0].sha256``, ``'target'``). Fields this version does not know
are accepted and kept in :attr:`RunRecord.raw`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from trav_gui import __version__
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import DEFAULT_DATASET, get_dataset, stored_shape
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.realism import flip_step, summary

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "MAX_RECORD_MODELS",
    "MAX_TEXT_CHARS",
    "RECORD_NAME",
    "ModelRef",
    "RunRecord",
    "RunRecordError",
    "build_run_record",
    "record_run",
    "read_run_record",
    "validate_run_record",
    "write_run_record",
]

FORMAT = "trav_gui.run"
FORMAT_VERSION = 1
RECORD_NAME = "run.json"
# A run record is about 20 kB (784 pixels and a few settings); anything far larger is not
# one of ours, and reading it whole could exhaust memory.
MAX_RECORD_BYTES = 4 << 20
MAX_RECORD_MODELS = 16
MAX_TEXT_CHARS = 4096
MAX_NAME_CHARS = 200


class RunRecordError(ValueError):
    """A run record that cannot be read or replayed; the message says which field and why."""


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
    start_image : (H, W) (colour: (3, H, W)) float32 in [0, 1], exactly the image the run started from.
    test_index : index into the shipped test images of the run's data set, or None for a drawing
        (read from ``start.test_index``, or from ``start.mnist_index``, its name in records written
        before the engine's wings).
    target : int in 0..K-1.
    config : the run's :class:`TraversalConfig` (its ``seed`` seeds the run).
    app_version, created : who wrote it and when (ISO 8601, UTC).
    raw : the record as read, including any fields this version does not know.
    """

    models: tuple[ModelRef, ...]
    start_image: np.ndarray
    test_index: int | None
    target: int
    config: TraversalConfig
    app_version: str
    created: str
    raw: dict = field(repr=False, compare=False)


# ----------------------------------------------------------------------------- schema
# strict=True everywhere: no bool for an int, no "0.5" for a float, no tuple for a list.
# Unknown fields are ignored here and kept in RunRecord.raw.

_STRICT = ConfigDict(strict=True, extra="ignore", arbitrary_types_allowed=True)
# The largest image side and class count a record may hold (data sets go up to 64×64).
MAX_IMAGE_SIDE = 64
MAX_CLASSES = 1000


def _nested_shape(value: object, depth: int = 0) -> tuple[int, ...] | None:
    """The shape of a rectangular nested list of at most 3 levels, else None."""
    if not isinstance(value, list) or depth > 2:
        return None
    if not value or not isinstance(value[0], list):
        return (len(value),)
    inner = [_nested_shape(v, depth + 1) for v in value]
    if inner[0] is None or any(i != inner[0] for i in inner):
        return None
    return (len(value), *inner[0])


def _flat(value: list) -> list:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def _image(value: Any) -> np.ndarray:
    """start.image: a square grey H×W or colour 3×H×W nested list of numbers in [0, 1]."""
    shape = _nested_shape(value)
    if (shape is None or len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 3)
            or shape[-1] != shape[-2] or not 1 <= shape[-1] <= MAX_IMAGE_SIDE):
        got = "×".join(map(str, shape)) if shape else _describe_shape(value)
        raise PydanticCustomError("run_record", "start.image must be a square H×W (grey) or 3×H×W (colour) "
                                  "image of side at most {side}, such as 28×28; got {got}",
                                  {"side": MAX_IMAGE_SIDE, "got": got})
    pixels = _flat(value)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pixels):
        raise PydanticCustomError("run_record", "start.image must hold numbers only")
    try:
        image = np.asarray(pixels, dtype=np.float64)
    except OverflowError:  # an int too large for a float
        raise PydanticCustomError("run_record", "start.image values must lie in [0, 1]") from None
    if not np.isfinite(image).all():
        raise PydanticCustomError("run_record", "start.image contains NaN or inf")
    if image.min() < 0 or image.max() > 1:
        raise PydanticCustomError("run_record", "start.image values must lie in [0, 1]")
    return image.astype(np.float32).reshape(shape)


_Text = Annotated[StrictStr, Field(max_length=MAX_NAME_CHARS)]


class _Model(BaseModel):
    model_config = _STRICT
    name: Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    path: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)] | None = None


class _Start(BaseModel):
    model_config = _STRICT
    image: Annotated[np.ndarray, PlainValidator(_image)]
    test_index: Annotated[StrictInt, Field(ge=0)] | None = None
    # Its name in records written before the data sets had a common name for it; still read.
    mnist_index: Annotated[StrictInt, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one_index(self) -> "_Start":
        if self.test_index is not None and self.mnist_index is not None and self.test_index != self.mnist_index:
            raise PydanticCustomError("run_record", "start.test_index and start.mnist_index disagree")
        return self

    @property
    def index(self) -> int | None:
        return self.test_index if self.test_index is not None else self.mnist_index


def _config(value: Any) -> TraversalConfig:
    if not isinstance(value, dict):
        raise PydanticCustomError("run_record", "'config' must be an object")
    try:
        return TraversalConfig.from_dict(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PydanticCustomError("run_record", "config: {error}", {"error": str(exc)}) from None


class _Record(BaseModel):
    # Field order is the order errors are reported in: format first.
    model_config = _STRICT
    format: Literal["trav_gui.run"]  # FORMAT
    format_version: Annotated[StrictInt, Field(le=FORMAT_VERSION)]
    models: Annotated[list[_Model], Field(min_length=1, max_length=MAX_RECORD_MODELS)]
    start: _Start
    target: Annotated[StrictInt, Field(ge=0, lt=MAX_CLASSES)]
    config: Annotated[TraversalConfig, PlainValidator(_config)]
    seed: StrictInt | None = None
    app_version: _Text | None = None
    created: _Text | None = None

    @model_validator(mode="after")
    def _seed_matches_config(self) -> "_Record":
        if "seed" in self.model_fields_set and self.seed != self.config.seed:
            raise PydanticCustomError("run_record", "'seed' disagrees with config.seed")
        return self


# ----------------------------------------------------------------------------- messages

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60

# What to say when the field at this path (list indices as "*") is missing or wrong; the
# indices fill the {} in order.
_MESSAGES: dict[tuple, str] = {
    (): "a run record must be a JSON object",
    ("format_version",): "'format_version' must be an integer",
    ("models",): "'models' must be a non-empty list",
    ("models", "*"): "models[{}] must be an object",
    ("models", "*", "name"): f"models[{{}}].name must be a non-empty string of at most {MAX_NAME_CHARS} characters",
    ("models", "*", "sha256"): "models[{}].sha256 must be 64 lowercase hex digits",
    ("models", "*", "path"): f"models[{{}}].path must be a string of at most {MAX_TEXT_CHARS} characters",
    ("start",): "'start' must be an object",
    ("start", "test_index"): "start.test_index must be null or a non-negative integer",
    ("start", "mnist_index"): "start.mnist_index must be null or a non-negative integer",
    ("config",): "'config' must be an object",
    ("seed",): "'seed' must be an integer equal to config.seed",
    ("app_version",): f"'app_version' must be a string of at most {MAX_NAME_CHARS} characters",
    ("created",): f"'created' must be a string of at most {MAX_NAME_CHARS} characters",
}


def _path(loc: Sequence) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "the record"


def _describe_shape(value: object) -> str:
    if not isinstance(value, list):
        return f"a {type(value).__name__}"
    inner = {len(r) if isinstance(r, list) else type(r).__name__ for r in value[:64]}
    return f"{len(value)} rows of {', '.join(map(str, sorted(inner, key=str))) or 'nothing'}"


def _message(error: Mapping, data: Any) -> str:
    """One pydantic error as a sentence that names the field (``data`` is the input)."""
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "run_record":  # ours, already worded
        return str(error["msg"])
    key = tuple("*" if isinstance(k, int) else k for k in loc)
    if key == ("format",):
        return f"not a run record: 'format' is {_SHORT.repr(data.get('format'))}, expected {FORMAT!r}"
    if key == ("format_version",) and kind == "less_than_equal":
        return (f"run record format {data['format_version']} is newer than this app understands "
                f"({FORMAT_VERSION}); update trav-gui")
    if key == ("models",) and kind == "too_long":
        return (f"'models' lists {len(data['models'])} models; "
                f"a run compares at most {MAX_RECORD_MODELS}")
    if key == ("start", "image"):
        return "start.image is missing"
    if key == ("target",):
        return f"'target' must be an integer 0..{MAX_CLASSES - 1}, got {_SHORT.repr(data.get('target'))}"
    template = _MESSAGES.get(key)
    if template is None:
        return f"{_path(loc)}: {error['msg']}"
    return template.format(*(k for k in loc if isinstance(k, int)))


# ----------------------------------------------------------------------------- public


def validate_run_record(data: object) -> RunRecord:
    """Check a run record (parsed JSON) field by field.

    Returns
    -------
    RunRecord

    Raises
    ------
    RunRecordError : naming the first field that is missing or wrong.
    """
    try:
        parsed = _Record.model_validate(data)
    except ValidationError as exc:
        raise RunRecordError(_message(exc.errors(include_url=False)[0], data)) from None
    assert isinstance(data, dict)
    image = parsed.start.image
    image.flags.writeable = False
    _check_world(image, parsed.target, data)
    return RunRecord(
        models=tuple(ModelRef(m.name, m.sha256, m.path) for m in parsed.models),
        start_image=image,
        test_index=parsed.start.index,
        target=parsed.target,
        config=parsed.config,
        app_version=parsed.app_version or "?",
        created=parsed.created or "",
        raw=data,
    )


def _check_world(image: np.ndarray, target: int, data: dict) -> None:
    """The start image and the target fit the data set the record names (``extra.dataset``;
    records written before there were several data sets are MNIST's)."""
    extra = data.get("extra")
    name = extra.get("dataset") if isinstance(extra, dict) else None
    try:
        ds = get_dataset(name if isinstance(name, str) else DEFAULT_DATASET)
    except ValueError:  # a data set this installation does not have: replay says so
        return
    if image.shape != stored_shape(ds):
        raise RunRecordError(f"start.image must be {'×'.join(map(str, stored_shape(ds)))} for {ds.title}, "
                             f"got {'×'.join(map(str, image.shape))}")
    if target >= ds.num_classes:
        raise RunRecordError(f"'target' must be an integer 0..{ds.num_classes - 1} for {ds.title}, got {target}")


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def build_run_record(
    models: Sequence[ModelRef],
    start_image: np.ndarray,
    target: int,
    config: TraversalConfig,
    test_index: int | None = None,
    created: str | None = None,
    extra: Mapping | None = None,
) -> dict:
    """The JSON-ready run record of one traversal.

    Parameters
    ----------
    models : the models in column order, with the sha256 of their weights.
    start_image : (H, W) or (3, H, W) float in [0, 1]; stored as float32 values, which JSON
        round-trips exactly.
    target : int in 0..K-1.
    config : every setting of the run, seed included.
    test_index : the shipped test image (of the run's data set) the start came from, or None.
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
            "test_index": None if test_index is None else int(test_index),
            "source": "test_set" if test_index is not None else "drawing",
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


def record_run(
    models: Sequence[ModelRef],
    start_image: np.ndarray,
    target: int,
    config: TraversalConfig,
    steps: np.ndarray,
    probs: np.ndarray,
    nn_ratio: np.ndarray | None = None,
    test_index: int | None = None,
    extra: Mapping | None = None,
    l2: np.ndarray | None = None,
) -> dict:
    """The run record of a traversal that ran, with its per-model summary: what the app's export
    and ``trav-gui traverse`` both write.

    Parameters
    ----------
    models, start_image, target, config, test_index : as for :func:`build_run_record`.
    steps : (T,) the step number of each frame.
    probs : (T, M, K) each model's class probabilities, models in the order of ``models``.
    nn_ratio : (T, M) nearest-real ratios (NaN where not scored), or None without realism.
    l2 : (T, M) perturbation norms, where known: a retry's restart (back at the start) is read from
        them, so that its most realistic frame is its own pull's.
    extra : more fields for ``"extra"`` (the data set, the device...).

    Returns
    -------
    dict whose ``"extra"`` holds ``steps_taken``, ``flip_step`` (per model name) and
    ``realism`` (per model name: flip, confident and most realistic step; see
    :func:`trav_gui.engine.realism.summary`).
    """
    names = [m.name for m in models]
    steps = np.asarray(steps)
    flips = [flip_step(probs[:, j], target) for j in range(len(names))]
    realism = {name: summary(probs[:, j], None if nn_ratio is None else nn_ratio[:, j], steps, target,
                             None if l2 is None else l2[:, j])
               for j, name in enumerate(names)}
    extra = {"steps_taken": int(steps[-1]),
             "flip_step": {name: None if i is None else int(steps[i]) for name, i in zip(names, flips)},
             **(extra or {}), "realism": realism}
    return build_run_record(models, start_image, target, config, test_index=test_index, extra=extra)


def write_run_record(path: str | os.PathLike, record: dict) -> Path:
    """Validate ``record`` and write it as JSON to ``path`` (atomically)."""
    validate_run_record(record)
    path = Path(path)
    write_bytes_atomic(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
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
