"""Model cards: the JSON beside a model's file that says what the model is and how it was measured.

``robust.safetensors`` has ``robust.json``; ``realistic.recipe`` has ``realistic.json``; a prior's
``score-mnist.safetensors`` has ``score-mnist.json``. :func:`read_card` is the one reader (one size
limit, for classifiers and priors alike) and returns a :class:`ModelCard`, validated once, there.
A model in a listing is a :class:`ModelEntry`: its name, where it is and the card.

A card keeps every entry it does not model (the training settings, the learning curve...), so
that a card read and written again loses nothing.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from trav_gui.engine.data.datasets import DEFAULT_DATASET, DatasetName, get_dataset
from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["LAYOUTS", "MAX_CARD_BYTES", "OUTPUTS", "Evaluation", "InputSpec", "ModelCard", "ModelEntry", "RobustFigure",
           "card_path", "headline_label",
           "check_one_dataset", "parse_card", "read_card", "refuse_judges"]

# A model card is a few kB; a larger file is not one (and is not read whole).
MAX_CARD_BYTES = 1 << 20
Source = Literal["shipped", "user", "folder", "memory"]
# What a model may take: an image (N, C, H, W) or flat pixels (N, C·H·W) (MNIST: (N, 1, 28, 28)
# or (N, 784)); what it may return.
LAYOUTS = {"image": "(N, C, H, W)", "flat": "(N, C·H·W)"}
OUTPUTS = ("logits", "log_probabilities", "probabilities")
RANGES = ((0, 1), (0, 255))
# An entry that should be a JSON object: anything else is read as empty (a note, not a measurement).
_Object = BeforeValidator(lambda value: value if isinstance(value, dict) else {})


class InputSpec(BaseModel):
    """How a user's model takes its pixels (a card's ``"input"``): layout, value range, normalization.

    Every problem is reported in the card's own words (``"input.range" must be [0, 1] or [0, 255]``).
    """

    model_config = ConfigDict(frozen=True)
    layout: str
    range: tuple[int, int] = (0, 1)
    # One number for all channels, or one per channel (torchvision's Normalize(mean, std)).
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _an_object_of_known_entries(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f'"input" must be an object such as {{"layout": "image", "range": [0, 1]}}, '
                             f"got {value!r}")
        unknown = sorted(set(value) - set(cls.model_fields))
        if unknown:
            raise ValueError(f'"input" has unknown entries {unknown}; it takes {sorted(cls.model_fields)}')
        if ("mean" in value) != ("std" in value):
            raise ValueError('"input" needs both "mean" and "std" (or neither)')
        return value

    @field_validator("layout", mode="before")
    @classmethod
    def _known_layout(cls, value: Any) -> Any:
        if not (isinstance(value, str) and value in LAYOUTS):
            raise ValueError(f'"input.layout" must be "image" (N, C, H, W) or "flat" (N, C·H·W), got {value!r}')
        return value

    @field_validator("range", mode="before")
    @classmethod
    def _known_range(cls, value: Any) -> Any:
        if not (isinstance(value, (list, tuple)) and not any(isinstance(v, bool) for v in value)
                and tuple(value) in RANGES):
            raise ValueError(f'"input.range" must be [0, 1] or [0, 255], got {value!r}')
        return tuple(value)

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _finite_number(cls, value: Any, info) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 1:  # torchvision's Normalize((0.1307,), (0.3081,))
            value = value[0]
        numbers = list(value) if isinstance(value, (list, tuple)) and len(value) == 3 else [value]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
            raise ValueError(f'"input.{info.field_name}" must be a finite number, or one per channel '
                             f'(a list of 1 or 3), got {value!r}')
        return tuple(float(v) for v in numbers) if len(numbers) == 3 else float(numbers[0])

    @field_validator("std")
    @classmethod
    def _positive(cls, value: float | tuple[float, ...] | None) -> float | tuple[float, ...] | None:
        if value is not None and min(value if isinstance(value, tuple) else (value,)) <= 0:
            raise ValueError(f'"input.std" must be > 0, got {value}')
        return value


class RobustFigure(BaseModel):
    """One robust-accuracy measurement: ``accuracy`` under ``attack`` at radius ``eps``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    eps: float
    accuracy: float
    attack: str = "attack"


class Evaluation(BaseModel):
    """What was measured: clean accuracy on the test set, and robust accuracy per attack and radius."""

    model_config = ConfigDict(extra="allow", frozen=True)
    clean_accuracy: float | None = None
    clean_samples: int | None = None
    robust: list[RobustFigure] = []
    realism: Annotated[dict, _Object] = {}  # a recipe's measured realism: {"success": fraction of traversals, ...}

    @property
    def realism_success(self) -> float | None:
        """The fraction of traversals that ended real-looking, as measured for a recipe's card."""
        value = self.realism.get("success")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @field_validator("robust", mode="before")
    @classmethod
    def _measured_only(cls, value: Any) -> Any:
        # Entries without both numbers are notes, not measurements: they are not shown as figures.
        if not isinstance(value, list):
            return []
        return [r for r in value if isinstance(r, dict) and isinstance(r.get("accuracy"), (int, float))
                and isinstance(r.get("eps"), (int, float))]


class ModelCard(BaseModel):
    """A model card, validated.

    Attributes
    ----------
    dataset : the data set the model was trained on (cards from before there were several: MNIST).
    kind : what the model is (``"robust"``, ``"standard"``, ``"user"``, ``"recipe"``...).
    role : ``"judge"`` (judges realism; never traversed), ``"prior"`` or None (a classifier).
    prior : a prior's kind (``"dae"``, ``"score"``).
    width : a score prior's U-Net width (the channels of its first level); None for the default, 32.
    blur : a realism critic's input blur in pixels (:class:`~trav_gui.engine.models.priors.RealismCritic`);
        None or 0 for none.
    source_sha256 : a user model's: the file it was added from (the same file is not added twice).
    architecture : a registered architecture (``.safetensors`` files).
    input, output : a user model's conventions, checked by :mod:`trav_gui.engine.models.conventions`.
    input_shape : (C, H, W) of one input image, if the card says; it must be the data set's.
    sha256 : of the weights the card was written for.
    evaluation : the measured accuracies.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str | None = None
    kind: str | None = None
    role: str | None = None
    dataset: DatasetName = DEFAULT_DATASET
    description: str | None = None
    architecture: Any = None
    weights: str | None = None
    sha256: str | None = None
    class_names: list[str] | None = None
    input: InputSpec | None = None
    input_shape: tuple[int, int, int] | None = None
    output: str | None = None
    prior: Any = None  # a prior's kind ("dae", "score")
    width: Annotated[int, Field(ge=1)] | None = None  # a score prior's U-Net width (its channels); None: 32
    blur: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # a critic's input blur (px); None: none
    source_sha256: str | None = None  # a user model's: the sha256 of the file it was added from
    evaluation: Annotated[Evaluation, _Object] = Evaluation()

    @field_validator("output", mode="before")
    @classmethod
    def _known_output(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and value in OUTPUTS):
            raise ValueError(f'"output" must be one of {", ".join(OUTPUTS)}, got {value!r}')
        return value

    @model_validator(mode="after")
    def _class_names_of_the_data_set(self) -> "ModelCard":
        ds = get_dataset(self.dataset)
        expected = list(ds.class_names)
        if self.class_names is not None and self.class_names != expected:
            raise ValueError(f'"class_names" {self.class_names!r} are not the {self.dataset} classes in label order: '
                             f"{expected}")
        if self.input_shape is not None and tuple(self.input_shape) != tuple(ds.shape):
            raise ValueError(f'"input_shape" {list(self.input_shape)} is not the shape of {self.dataset} images, '
                             f"{list(ds.shape)}: the model was made for other images")
        return self

    @property
    def is_judge(self) -> bool:
        """A judge of realism: never traversed, ensembled or used to stop a run."""
        return self.role == "judge"

    @property
    def declares_conventions(self) -> bool:
        """The card says how its model takes input (a user's card), not only what it is (ours)."""
        return bool({"input", "output"} & self.model_fields_set)

    def robust_headline(self) -> RobustFigure | None:
        """The strongest robustness figure: the lowest accuracy measured at the main radius.

        The main radius is the first one evaluated (the training ε). When both PGD and the
        stronger APGD worst case were measured there, the APGD figure is the honest one and is
        returned. None if the card has no robust evaluation.
        """
        runs = self.evaluation.robust
        if not runs:
            return None
        return min((r for r in runs if r.eps == runs[0].eps), key=lambda r: r.accuracy)

    def to_json(self) -> dict:
        """The card as the JSON object it was read from (entries it does not model included)."""
        return self.model_dump(mode="json", exclude_unset=True)


def headline_label(figure: RobustFigure) -> str:
    """A short name for a figure's attack, for compact displays: ``"PGD+APGD"``, ``"PGD-50"``..."""
    return "PGD+APGD" if "APGD" in figure.attack else figure.attack.split(",")[0]


@dataclass(frozen=True)
class ModelEntry:
    """A model as a listing shows it: its name, where it is, where it came from, and its card.

    ``path`` is None for a model that lives only in memory (``trav_gui.show(models=...)``):
    :attr:`key` identifies it in a session instead.
    """

    name: str
    path: Path | None
    source: Source
    card: ModelCard

    @property
    def key(self) -> str:
        """What identifies the model in this session: its path, or ``memory:<name>``."""
        return os.fspath(self.path) if self.path is not None else f"memory:{self.name}"

    @property
    def dataset(self) -> str:
        return self.card.dataset

    def to_json(self) -> dict:
        """The card with ``name``, ``path`` and ``source`` added (``trav-gui models --json``)."""
        return {**self.card.to_json(), "name": self.name, "path": None if self.path is None else str(self.path),
                "source": self.source}


def card_path(weights: str | os.PathLike) -> Path:
    """The JSON model card that belongs beside a model's file."""
    return Path(weights).with_suffix(".json")


def _problems(exc: ValidationError) -> str:
    out = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(k) for k in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append(message if not where or message.startswith(f'"{where}"') else f'"{where}": {message}')
    return "; ".join(out)


def parse_card(data: object, weights: str | os.PathLike) -> ModelCard:
    """The card of ``weights`` from its parsed JSON; ModelLoadError naming both files and every problem."""
    where = f"{Path(weights).name}: its card {card_path(weights).name}"
    if not isinstance(data, dict):
        raise ModelLoadError(f"{where} cannot be read (a JSON {type(data).__name__}, not an object); "
                             "fix it, or delete it and write a new one")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ModelLoadError(f"{where} is inconsistent: {_problems(exc)}") from None


def read_card(weights: str | os.PathLike, strict: bool = False) -> ModelCard | None:
    """The model card beside ``weights``; None if there is none.

    A card that is not a JSON object of at most :data:`MAX_CARD_BYTES`, or whose entries are of the
    wrong kind, raises :class:`ModelLoadError` with ``strict``, and is skipped (None) without.
    """
    path = card_path(weights)
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise ValueError(f"{path.stat().st_size} bytes, more than a card's {MAX_CARD_BYTES}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if strict:
            raise ModelLoadError(f"{path.name}: the model card cannot be read ({exc}); fix it, or delete it "
                                 "and write a new one") from None
        return None
    try:
        return parse_card(data, weights)
    except ModelLoadError:
        if strict:
            raise
        return None


def check_one_dataset(entries: Sequence[ModelEntry]) -> str:
    """The one data set of ``entries``; a ValueError naming each model's data set if they differ.

    A traversal compares models on one image of one data set: a digit classifier has nothing
    to say about a sneaker.
    """
    sets = {e.dataset for e in entries}
    if len(sets) > 1:
        which = ", ".join(f"{e.name} ({e.dataset})" for e in entries)
        raise ValueError(f"these models were trained on different data sets: {which}; "
                         "a run compares models of one data set")
    return sets.pop() if sets else DEFAULT_DATASET


def refuse_judges(entries: Sequence[ModelEntry]) -> None:
    """ValueError naming any judge among ``entries``: a judge that is traversed judges itself."""
    judges = [e.name for e in entries if e.card.is_judge]
    if judges:
        raise ValueError(f"{', '.join(judges)} is a judge of realism (role \"judge\"): it is never "
                         "traversed, so that its verdict stays independent; pick another model")
