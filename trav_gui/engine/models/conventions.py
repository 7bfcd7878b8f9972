"""What a model card says about a model's input and output, checked, and the adapter it implies.

Every model the app traverses takes ``(N, 1, 28, 28)`` float32 pixels in [0, 1] and returns
logits ``(N, 10)``. A model someone trained elsewhere may want its pixels normalized, as one
flat vector of 784, or may return probabilities: its card (the JSON beside the weights) says
so, and :func:`adapt` wraps the model so that it takes and returns the app's convention.

A complete card of a user's model::

    {
      "architecture": "lenet5",              # .safetensors only: a name of ARCHITECTURES
      "dataset": "mnist",                    # or "fashion-mnist"
      "class_names": ["0", "1", ..., "9"],   # optional; must be the data set's, in label order
      "input": {"layout": "image",           # (N, 1, 28, 28); "flat": (N, 784)
                "range": [0, 1],             # or [0, 255]: what the pixels are scaled to
                "mean": 0.1307, "std": 0.3081},  # optional: then (x - mean) / std
      "output": "logits"                     # ONNX only: or "log_probabilities", "probabilities"
    }

A card with neither ``"input"`` nor ``"output"`` is a card of the app's own format (the
shipped models, :func:`~trav_gui.engine.models.save_model`): the model takes pixels in [0, 1]
in its architecture's layout and returns logits. A card with either must have both, and a
data set. Any problem is a :class:`~trav_gui.engine.models.ModelLoadError` that says what to
write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from torch import nn

from trav_gui.engine.data.datasets import DATASETS, DEFAULT_DATASET, get_dataset
from trav_gui.engine.models.architectures import ARCHITECTURE_LAYOUTS, ARCHITECTURES
from trav_gui.engine.models.card import ModelCard
from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["LAYOUTS", "OUTPUTS", "ConventionAdapter", "Conventions", "adapt", "card_template",
           "conventions_from_card", "missing_card_message"]

LAYOUTS = {"image": (1, 28, 28), "flat": (784,)}
OUTPUTS = ("logits", "log_probabilities", "probabilities")
RANGES = ((0, 1), (0, 255))
INPUT_KEYS = {"layout", "range", "mean", "std"}
# log(p) of a probability that underflowed to 0 would be -inf: the smallest normal float32 instead.
TINY_PROBABILITY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class Conventions:
    """How a model wants its pixels and what it returns.

    layout : ``"image"`` (N, 1, 28, 28) or ``"flat"`` (N, 784).
    scale : the pixels' top value (1 or 255): the app's [0, 1] pixels are multiplied by it.
    mean, std : None, or the normalization applied after scaling: ``(x - mean) / std``.
    output : ``"logits"``, ``"log_probabilities"`` (used as logits: softmax gives the same
        probabilities) or ``"probabilities"`` (their log is taken).
    """

    layout: str = "image"
    scale: float = 1.0
    mean: float | None = None
    std: float | None = None
    output: str = "logits"

    @property
    def native(self) -> bool:
        """True when the model already takes and returns the app's convention."""
        return self.layout == "image" and self.scale == 1 and self.mean is None and self.output != "probabilities"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The app's (N, 1, 28, 28) pixels in [0, 1] as the model wants them."""
        if self.scale != 1:
            x = x * self.scale
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x.flatten(1) if self.layout == "flat" else x

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """The model's output as logits."""
        return torch.log(out.clamp_min(TINY_PROBABILITY)) if self.output == "probabilities" else out

    def to_card(self) -> dict:
        """The card entries that declare these conventions."""
        entry: dict = {"layout": self.layout, "range": [0, int(self.scale)]}
        if self.mean is not None:
            entry.update(mean=self.mean, std=self.std)
        return {"input": entry, "output": self.output}


class ConventionAdapter(nn.Module):
    """``inner`` seen through its :class:`Conventions`: (N, 1, 28, 28) in [0, 1] in, logits out."""

    def __init__(self, inner: nn.Module, conventions: Conventions) -> None:
        super().__init__()
        self.inner = inner
        self.conventions = conventions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conventions.finish(self.inner(self.conventions.prepare(x)))


def adapt(model: nn.Module, conventions: Conventions) -> nn.Module:
    """``model`` itself when it already speaks the app's convention, else wrapped."""
    return model if conventions.native else ConventionAdapter(model, conventions)


def card_template(architecture: str | None = None, layout: str = "image", dataset: str = DEFAULT_DATASET) -> dict:
    """A complete card to start from (``architecture`` None: an ONNX file's card, which names none)."""
    ds = get_dataset(dataset)
    card: dict = {"architecture": architecture} if architecture else {}
    card.update(dataset=ds.name, class_names=list(ds.class_names),
                input={"layout": layout, "range": [0, 1]}, output="logits")
    return card


def _example(architecture: str | None, layout: str, dataset: str = DEFAULT_DATASET) -> str:
    return json.dumps(card_template(architecture, layout, dataset))


def missing_card_message(file_name: str, card_name: str, why: str, architecture: str | None = None,
                         layout: str = "image") -> str:
    """'X has no card Y: why; write Y beside it, for example {...}'."""
    return (f"{file_name} has no card {card_name}: {why}. Write {card_name} beside it saying what the model "
            f"is and how it takes its input, for example: {_example(architecture, layout)} "
            "(\"input\": add \"mean\" and \"std\" if it was trained on normalized pixels; \"output\": "
            "\"probabilities\" if it ends with a softmax)")


def _known(value, names) -> bool:
    """``value`` is one of ``names`` (a JSON list or object, which cannot be, is not an error here)."""
    return isinstance(value, str) and value in names


def _number(value, what: str, problems: list[str]) -> float | None:
    if isinstance(value, list) and len(value) == 1:  # torchvision's Normalize((0.1307,), (0.3081,))
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"\"input.{what}\" must be a finite number (or a list of one), got {value!r}")
        return None
    return float(value)


def _parse_input(entry, problems: list[str]) -> Conventions | None:
    if not isinstance(entry, dict):
        problems.append(f"\"input\" must be an object such as {{\"layout\": \"image\", \"range\": [0, 1]}}, "
                        f"got {entry!r}")
        return None
    unknown = sorted(set(entry) - INPUT_KEYS)
    if unknown:
        problems.append(f"\"input\" has unknown entries {unknown}; it takes {sorted(INPUT_KEYS)}")
    layout = entry.get("layout")
    if not _known(layout, LAYOUTS):
        problems.append(f"\"input.layout\" must be \"image\" (N, 1, 28, 28) or \"flat\" (N, 784), got {layout!r}")
    value_range = entry.get("range", [0, 1])
    if not (isinstance(value_range, list) and tuple(value_range) in RANGES
            and not any(isinstance(v, bool) for v in value_range)):
        problems.append(f"\"input.range\" must be [0, 1] or [0, 255], got {value_range!r}")
        value_range = [0, 1]
    mean = std = None
    if ("mean" in entry) != ("std" in entry):
        problems.append("\"input\" needs both \"mean\" and \"std\" (or neither)")
    elif "mean" in entry:
        mean, std = _number(entry["mean"], "mean", problems), _number(entry["std"], "std", problems)
        if std is not None and std <= 0:
            problems.append(f"\"input.std\" must be > 0, got {std}")
    if not _known(layout, LAYOUTS):
        return None
    return Conventions(layout=layout, scale=float(value_range[1]), mean=mean, std=std)


def _check_class_names(card: ModelCard, problems: list[str]) -> None:
    expected = list(DATASETS[card.dataset].class_names)
    if card.class_names is not None and card.class_names != expected:
        problems.append(f"\"class_names\" {card.class_names!r} are not the {card.dataset} classes in label order: "
                        f"{expected}")


def conventions_from_card(card: ModelCard | None, file_name: str, card_name: str, architecture: str | None,
                          onnx: bool = False) -> tuple[Conventions, str]:
    """The conventions and data set a card declares, checked against the model.

    Parameters
    ----------
    card : the card (None when the file has none); its data set is already checked.
    file_name, card_name : for messages.
    architecture : the registered architecture (``.safetensors``), None for an ONNX graph.
    onnx : an ONNX graph, which must have a complete card.

    Raises
    ------
    ModelLoadError : a missing (ONNX), incomplete or inconsistent card, saying what to write.
    """
    arch_layout = ARCHITECTURE_LAYOUTS.get(architecture or "", "image")
    if card is None:
        if onnx:
            raise ModelLoadError(missing_card_message(
                file_name, card_name, "an ONNX file does not say how its pixels are scaled nor what it returns"))
        return Conventions(layout=arch_layout), DEFAULT_DATASET
    if not card.declares_conventions and not onnx:
        # The app's own card format: pixels in [0, 1], logits, in the architecture's layout.
        return Conventions(layout=arch_layout), card.dataset
    missing = [k for k in ("dataset", "input", "output") if k not in card.model_fields_set]
    if missing:
        example = _example(architecture, arch_layout, card.dataset)
        raise ModelLoadError(f"{file_name}: its card {card_name} is incomplete: add "
                             f"{', '.join(json.dumps(k) for k in missing)}; "
                             f"a complete card: {example}")
    problems: list[str] = []
    if onnx and card.architecture not in (None, "onnx"):
        problems.append(f"an ONNX file carries its own graph: remove \"architecture\" ({card.architecture!r})")
    _check_class_names(card, problems)
    dataset = card.dataset
    conventions = _parse_input(card.input, problems)
    output = card.output
    if not _known(output, OUTPUTS):
        problems.append(f"\"output\" must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if architecture is not None and output in OUTPUTS and output != "logits":
        problems.append(f"architecture {architecture!r} returns logits (a softmax at the end of a model holds "
                        f"no weights, so the file has none), but \"output\" says {output!r}: "
                        "set \"output\": \"logits\"")
    if architecture is not None and conventions is not None and conventions.layout != arch_layout:
        problems.append(f"architecture {architecture!r} takes {arch_layout} input "
                        f"{LAYOUTS[arch_layout]}, but \"input.layout\" says {conventions.layout!r}: "
                        f"set \"layout\": \"{arch_layout}\"")
    if problems:
        raise ModelLoadError(f"{file_name}: its card {card_name} is inconsistent: " + "; ".join(problems))
    return Conventions(conventions.layout, conventions.scale, conventions.mean, conventions.std, output), dataset
