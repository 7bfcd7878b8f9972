"""What a model card says about a model's input and output, checked, and the adapter it implies.

Every model the app traverses takes ``(N, C, H, W)`` float32 pixels in [0, 1] and returns
logits ``(N, K)``, with the image shape and class count of its data set (MNIST: ``(N, 1, 28,
28)`` and 10). A model someone trained elsewhere may want its pixels normalized (per channel,
as torchvision's ``Normalize``), as one flat vector of C·H·W, or may return probabilities: its
card (the JSON beside the weights) says so, and :func:`adapt` wraps the model so that it takes
and returns the app's convention.

A complete card of a user's model::

    {
      "architecture": "lenet5",              # .safetensors only: a name of ARCHITECTURES
      "dataset": "mnist",                    # or "fashion-mnist", "colored-mnist", a user's folder
      "class_names": ["0", "1", ..., "9"],   # optional; must be the data set's, in label order
      "input": {"layout": "image",           # (N, C, H, W); "flat": (N, C*H*W)
                "range": [0, 1],             # or [0, 255]: what the pixels are scaled to
                "mean": 0.1307, "std": 0.3081},  # optional: then (x - mean) / std; colour worlds
                                             # may give one per channel: [0.49, 0.48, 0.45]
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
from dataclasses import dataclass

import torch
from torch import nn

from trav_gui.engine.data.datasets import DEFAULT_DATASET, get_dataset
from trav_gui.engine.models.architectures import ARCHITECTURE_LAYOUTS
from trav_gui.engine.models.card import LAYOUTS, ModelCard
from trav_gui.engine.models.errors import ModelLoadError

__all__ = ["ConventionAdapter", "Conventions", "adapt", "card_template",
           "conventions_from_card", "missing_card_message"]

# log(p) of a probability that underflowed to 0 would be -inf: the smallest normal float32 instead.
TINY_PROBABILITY = torch.finfo(torch.float32).tiny


@dataclass(frozen=True)
class Conventions:
    """How a model wants its pixels and what it returns.

    layout : ``"image"`` (N, C, H, W) or ``"flat"`` (N, C·H·W).
    scale : the pixels' top value (1 or 255): the app's [0, 1] pixels are multiplied by it.
    mean, std : None, or the normalization applied after scaling: ``(x - mean) / std``; a number,
        or one per channel.
    output : ``"logits"``, ``"log_probabilities"`` (used as logits: softmax gives the same
        probabilities) or ``"probabilities"`` (their log is taken).
    """

    layout: str = "image"
    scale: float = 1.0
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None
    output: str = "logits"

    @property
    def native(self) -> bool:
        """True when the model already takes and returns the app's convention."""
        return self.layout == "image" and self.scale == 1 and self.mean is None and self.output != "probabilities"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The app's (N, C, H, W) pixels in [0, 1] as the model wants them."""
        if self.scale != 1:
            x = x * self.scale
        if self.mean is not None:
            x = (x - _per_channel(self.mean, x)) / _per_channel(self.std, x)
        return x.flatten(1) if self.layout == "flat" else x

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """The model's output as logits."""
        return torch.log(out.clamp_min(TINY_PROBABILITY)) if self.output == "probabilities" else out

    def to_card(self) -> dict:
        """The card entries that declare these conventions."""
        entry: dict = {"layout": self.layout, "range": [0, int(self.scale)]}
        if self.mean is not None:
            entry.update(mean=_json(self.mean), std=_json(self.std))
        return {"input": entry, "output": self.output}


def _per_channel(value: float | tuple[float, ...], x: torch.Tensor) -> float | torch.Tensor:
    """A number as is; one per channel as a (1, C, 1, 1) tensor beside ``x`` (N, C, H, W)."""
    return value if isinstance(value, float) else torch.tensor(value, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


def _json(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


class ConventionAdapter(nn.Module):
    """``inner`` seen through its :class:`Conventions`: (N, C, H, W) in [0, 1] in, logits out."""

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
                file_name, card_name, "an ONNX file does not say how its pixels are scaled nor what it returns")
                + f". Or let trav-gui models add {file_name} (File → Add model… in the app) detect it by measuring "
                "test accuracy and write the card")
        return Conventions(layout=arch_layout), DEFAULT_DATASET
    if not card.declares_conventions and not onnx:
        # The app's own card format: pixels in [0, 1], logits, in the architecture's layout.
        return Conventions(layout=arch_layout), card.dataset
    missing = [k for k in ("dataset", "input", "output") if k not in card.model_fields_set or getattr(card, k) is None]
    if missing:
        example = _example(architecture, arch_layout, card.dataset)
        raise ModelLoadError(f"{file_name}: its card {card_name} is incomplete: add "
                             f"{', '.join(json.dumps(k) for k in missing)}; "
                             f"a complete card: {example}")
    # The card's own entries were checked where it was read (ModelCard); what is left is whether
    # they fit this model.
    problems: list[str] = []
    if onnx and card.architecture not in (None, "onnx"):
        problems.append(f"an ONNX file carries its own graph: remove \"architecture\" ({card.architecture!r})")
    spec, output = card.input, card.output
    if architecture is not None and output != "logits":
        problems.append(f"architecture {architecture!r} returns logits (a softmax at the end of a model holds "
                        f"no weights, so the file has none), but \"output\" says {output!r}: "
                        "set \"output\": \"logits\"")
    if architecture is not None and spec.layout != arch_layout:
        problems.append(f"architecture {architecture!r} takes {arch_layout} input "
                        f"{LAYOUTS[arch_layout]}, but \"input.layout\" says {spec.layout!r}: "
                        f"set \"layout\": \"{arch_layout}\"")
    channels = get_dataset(card.dataset).channels
    for name, value in (("mean", spec.mean), ("std", spec.std)):
        if isinstance(value, tuple) and len(value) != channels:
            problems.append(f"\"input.{name}\" has {len(value)} values, but {card.dataset} images have {channels} "
                            f"channel(s): give one number, or one per channel")
    if problems:
        raise ModelLoadError(f"{file_name}: its card {card_name} is inconsistent: " + "; ".join(problems))
    return Conventions(spec.layout, float(spec.range[1]), spec.mean, spec.std, output), card.dataset
