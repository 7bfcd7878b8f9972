"""An ONNX model without a card: its data set, input convention and output kind, found by measuring.

A graph says the shape of its input, not how its pixels were scaled nor whether it returns
logits or probabilities. :func:`detect_onnx` measures its accuracy with onnxruntime on the first
:data:`DETECT_IMAGES` shipped test images of every data set whose images have the graph's input
shape, under each usual input convention (:func:`candidates`: pixels in [0, 1]; normalized with
MNIST's mean and std 0.1307 / 0.3081 in grey worlds; normalized with the data set's own
statistics; [-1, 1]; 0-255). Accuracy hardly tells them apart (a ReLU network's argmax barely
moves when its input is scaled), its confidence does: among the conventions with a plausible
accuracy (at least :data:`PLAUSIBLE_ACCURACY`) the one with the lowest cross-entropy is taken
when it is clearly lowest (every other plausible one's at least :data:`CLEARLY_LOWER` times
as high); the output
kind is read off its outputs (rows of non-negative numbers that sum to 1: probabilities; rows
whose exponentials sum to 1: log-probabilities; anything else: logits). Otherwise the model is
refused with the table of what was measured, and its card must be written by hand.

Used by ``trav-gui models add`` and File → Add model… for an ``.onnx`` file without a card; the
card they write records the choice and the table (``"input_detected"``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from trav_gui.engine.data.datasets import all_datasets, get_dataset, test_images
from trav_gui.engine.models.conventions import Conventions
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.onnx_model import graph_input, ort_session, read_complete, run_in_chunks

__all__ = ["CLEARLY_LOWER", "DETECT_IMAGES", "MNIST_MEAN_STD", "PLAUSIBLE_ACCURACY", "Detection", "candidates",
           "cross_entropies", "detect_onnx", "output_kind"]

DETECT_IMAGES = 1000
PLAUSIBLE_ACCURACY = 0.5
# The best convention is taken when every other plausible one's cross-entropy (on the same test
# images) is at least this many times its own; else the model is refused with the table.
CLEARLY_LOWER = 1.2
MNIST_MEAN_STD = (0.1307, 0.3081)
# The data set's own statistics are not offered when they are this close to MNIST's (they are
# MNIST's own on MNIST): two names for one convention would never be "clearly" apart.
SAME_STATS = 0.01


@dataclass(frozen=True)
class Detection:
    """What was found: the data set, the conventions (with the output kind), the chosen
    candidate's label and accuracy, and every measurement as (data set, input, accuracy,
    cross-entropy), best first."""

    dataset: str
    conventions: Conventions
    label: str
    accuracy: float
    table: tuple[tuple[str, str, float, float], ...]
    samples: int

    def card_entries(self) -> dict:
        """The card entries that say what was detected, beside the data set and conventions themselves
        (``user_models.detected_summary`` reads them back as one line)."""
        return {"class_names": list(get_dataset(self.dataset).class_names),
                "input_detected": {"chosen": self.label, "output": self.conventions.output,
                                   "test_images": self.samples,
                                   "accuracies": [{"dataset": d, "input": label, "accuracy": round(acc, 4),
                                                   "cross_entropy": round(ce, 4)} for d, label, acc, ce in self.table]}}


def candidates(layout: str, channels: int, own_mean, own_std) -> list[tuple[str, Conventions]]:
    """The usual input conventions, labelled, for a data set of ``channels`` whose own per-channel
    statistics are ``own_mean`` and ``own_std`` (floats for one channel, tuples for several)."""
    out = [("pixels in [0, 1]", Conventions(layout))]
    if channels == 1:
        m, s = MNIST_MEAN_STD
        out.append((f"normalized with MNIST's mean/std {m}/{s}", Conventions(layout, mean=m, std=s)))
    if channels != 1 or max(abs(own_mean - MNIST_MEAN_STD[0]), abs(own_std - MNIST_MEAN_STD[1])) > SAME_STATS:
        shown = "/".join(_fmt(v) for v in (own_mean, own_std))
        out.append((f"normalized with the data set's mean/std {shown}", Conventions(layout, mean=own_mean, std=own_std)))
    out.append(("pixels in [-1, 1]", Conventions(layout, mean=0.5, std=0.5)))
    out.append(("pixels in 0-255", Conventions(layout, scale=255.0)))
    return out


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "(" + ", ".join(f"{x:.4f}" for x in v) + ")"


def output_kind(outputs: np.ndarray) -> str:
    """``"probabilities"``, ``"log_probabilities"`` or ``"logits"``: what rows of ``outputs`` (N, K) are."""
    out = outputs.astype(np.float64)
    if (out >= 0).all() and np.abs(out.sum(1) - 1).max() < 1e-3:
        return "probabilities"
    if (out <= 1e-6).all() and np.abs(np.log(np.exp(out).sum(1))).max() < 1e-3:
        return "log_probabilities"
    return "logits"


def _statistics(x: torch.Tensor):
    """Per-channel mean and std of images (N, C, H, W): floats for one channel, tuples for several."""
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).tolist()
    if len(mean) == 1:
        return round(mean[0], 4), round(std[0], 4)
    return tuple(round(m, 4) for m in mean), tuple(round(s, 4) for s in std)


def detect_onnx(path: str | Path, limit: int = DETECT_IMAGES) -> Detection:
    """Find an ONNX graph's data set, input convention and output kind by measuring (see the module).

    Raises :class:`ModelLoadError` when the graph cannot be read or run, fits no data set, or no
    convention is plausible and clearly best (with the table of accuracies).
    """
    path = Path(path)
    model, _ = read_complete(path)
    session = ort_session(model.SerializeToString())
    fits = []
    for name, ds in all_datasets().items():
        try:
            fits.append((name, *graph_input(model, path.name, ds)))
        except ModelLoadError:
            continue  # another image shape
    if not fits:
        shapes = ", ".join(sorted({"×".join(map(str, ds.shape)) for ds in all_datasets().values()}))
        raise ModelLoadError(f"{path.name}: its input fits no data set's images ({shapes}); add the data set first "
                             "(trav-gui datasets add) or write a card")
    table, outputs = [], {}
    for name, input_name, layout, batch in fits:
        ds = get_dataset(name)
        x, y = test_images(name, limit)
        for label, conventions in candidates(layout, ds.channels, *_statistics(x)):
            try:
                out = run_in_chunks(session, input_name, conventions.prepare(x).numpy(), batch)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's errors have no common base class
                raise ModelLoadError(f"{path.name}: onnxruntime cannot run this graph ({type(exc).__name__}: "
                                     f"{exc})") from None
            if out.ndim != 2 or out.shape != (len(y), ds.num_classes):
                continue  # not this data set's class count
            accuracy = float((out.argmax(1) == y.numpy()).mean())
            losses = cross_entropies(out, y.numpy())
            table.append((name, label, accuracy, float(losses.mean()), conventions))
            outputs[(name, label)] = out
    # Accuracy alone rarely tells the conventions apart: a ReLU network's argmax barely changes when
    # its input is scaled or shifted. Its confidence does: the convention it was trained in gives
    # by far the lowest cross-entropy, so that ranks them, among the plausible ones.
    table.sort(key=lambda row: (row[2] < PLAUSIBLE_ACCURACY, row[3]))
    rows = tuple((n, label, acc, ce) for n, label, acc, ce, _ in table)
    listed = "; ".join(f"{n}, {label}: {100 * acc:.1f} % (cross-entropy {ce:.3g})" for n, label, acc, ce in rows) \
        or "none ran"
    how = "write its card (trav-gui models add FILE reads FILE.json beside it; see README, \"Your own model\")"
    if not table or table[0][2] < PLAUSIBLE_ACCURACY:
        best = f"{100 * max(r[2] for r in table):.1f} %" if table else "nothing"
        raise ModelLoadError(f"{path.name}: no input convention gives a plausible accuracy (best {best}, at least "
                             f"{100 * PLAUSIBLE_ACCURACY:.0f} % needed); measured: {listed}. Is it trained? {how}")
    name, label, accuracy, loss, conventions = table[0]
    for other in table[1:]:
        if other[2] >= PLAUSIBLE_ACCURACY and other[0] == name and other[3] < loss * CLEARLY_LOWER:
            raise ModelLoadError(f"{path.name}: two input conventions are about as good ({label}, {other[1]}: "
                                 f"cross-entropy {loss:.3g} and {other[3]:.3g}); measured: {listed}. {how}")
    conventions = replace(conventions, output=output_kind(outputs[(name, label)]))
    return Detection(name, conventions, label, accuracy, rows, len(outputs[(name, label)]))


def cross_entropies(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each image's cross-entropy (N,) from ``outputs`` (N, K: logits, log-probabilities or probabilities)."""
    out = outputs.astype(np.float64)
    if output_kind(out) == "probabilities":
        out = np.log(np.clip(out, 1e-30, None))
    out = out - out.max(1, keepdims=True)
    log_p = out - np.log(np.exp(out).sum(1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]
