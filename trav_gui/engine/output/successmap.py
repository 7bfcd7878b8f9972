"""The success map: which source → target pairs a model traverses to a real-looking target.

For each class, the first ``per_class`` test images of that class (among the first
:data:`STARTS_POOL` test images: the realism reference's held-out images come after them) are
traversed to every other class. Each traversal is measured at its **confident point** (the
first step at which the model's own p(target) reaches
:data:`~trav_gui.engine.realism.CONFIDENT_PROB`), with the data set's independent judge and
nearest-real reference (:class:`~trav_gui.engine.realism.RealismScorer`):

- ``success``: it got confident, the judge calls the frame the target, and the frame is no
  further from the nearest real image of the target than 90 % of real images are;
- ``judge_agree``: the judge calls the confident frame the target (of those that got there);
- ``growth``: the nearest-real ratio at the last frame over the one at the confident point
  (how much noise the steps after it add; 1 for a run that stops there);
- ``reach``: the share that got confident at all;
- ``success_last``: the same verdict (judge and nearest real) on the **last frame**, for
  those that got confident: the frame a run ends on. For a plain model it has run on past its
  confident point; for a recipe it is the frame its stop rule stopped at, after its finish.

The work goes one start class at a time (``per_class`` × (K − 1) traversals in one batch);
after each, every traversal's figures are rewritten atomically to
``successmap_<name>_traversals.csv``, so an interrupted map continues where it stopped
(:func:`run_successmap` with the same settings) and nothing is ever half-written. The cells
are in ``successmap_<name>.csv``, the heat maps in ``successmap_<name>.png``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.datasets import get_dataset, test_set
from trav_gui.engine.files import save_png, write_bytes_atomic
from trav_gui.engine.models.weights import state_sha256
from trav_gui.engine.output.render import font
from trav_gui.engine.realism import CONFIDENT_PROB, RealismScorer

__all__ = [
    "STARTS_POOL",
    "TRAVERSAL_FIELDS",
    "SuccessMap",
    "SuccessMapCancelled",
    "map_from_rows",
    "read_traversals",
    "render_successmap",
    "run_successmap",
    "successmap_paths",
    "successmap_starts",
    "weakest_pairs",
    "write_successmap",
]

# Starts come from the first 1000 test images; the held-out realism reference uses the rest.
STARTS_POOL = 1000
TRAVERSAL_FIELDS = ["start_index", "source", "target", "reached", "confident_step", "judge_class", "nn_ratio",
                    "nn_ratio_last", "success", "judge_class_last", "success_last"]
CELL_FIELDS = ["source", "target", "traversals", "reach", "success", "judge_agree", "growth", "success_last"]


class SuccessMapCancelled(RuntimeError):
    """The map was cancelled; the start classes finished before are saved."""


def successmap_starts(dataset: str, per_class: int) -> dict[int, list[int]]:
    """Per class, the indices of its first ``per_class`` test images among the first
    :data:`STARTS_POOL` (fewer if the pool holds fewer)."""
    if per_class < 1:
        raise ValueError(f"starts per class must be 1 or more, got {per_class}")
    _, labels = test_set(dataset)
    pool = np.asarray(labels[:STARTS_POOL])
    return {c: [int(i) for i in np.flatnonzero(pool == c)[:per_class]] for c in range(get_dataset(dataset).num_classes)}


def successmap_paths(out: str | Path, name: str) -> dict[str, Path]:
    out = Path(out)
    return {"traversals": out / f"successmap_{name}_traversals.csv", "settings": out / f"successmap_{name}.json",
            "cells": out / f"successmap_{name}.csv", "png": out / f"successmap_{name}.png"}


@dataclass(frozen=True)
class SuccessMap:
    """Per (source, target) cell of K classes: arrays (K, K), NaN on the diagonal and where no
    traversal was measured. ``traversals`` counts each cell's traversals."""

    name: str
    dataset: str
    per_class: int
    config: TraversalConfig
    traversals: np.ndarray
    reach: np.ndarray
    success: np.ndarray
    judge_agree: np.ndarray
    growth: np.ndarray
    success_last: np.ndarray

    def by_source(self, last: bool = False) -> np.ndarray:
        """(K,) success over all of each start class's traversals (``last``: at the last frame)."""
        values = self.success_last if last else self.success
        return _ratio(np.nansum(values * self.traversals, 1), self.traversals.sum(1))

    def overall(self, last: bool = False) -> float:
        values = self.success_last if last else self.success
        return float(np.nansum(values * self.traversals) / max(1, self.traversals.sum()))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _measure(model, x0: np.ndarray, targets: np.ndarray, config: TraversalConfig, scorer: RealismScorer,
             shape, should_stop: Callable[[], bool] | None, progress: Callable[[int], None] | None,
             frames: dict | None = None) -> dict:
    """Each traversal's verdicts at its confident point and last frame (one value per traversal
    and key); ``frames``, when given, also receives the last frames (N, ...) as ``"last"``."""
    n = len(targets)
    conf_img = np.zeros(x0.shape, np.float32)
    conf_step = np.full(n, -1)
    last = None
    for frame in traverse([model], x0, targets, config, shape=shape):
        if should_stop is not None and should_stop():
            raise SuccessMapCancelled("cancelled")
        p = frame.probs[0, np.arange(n), targets]
        hit = (p >= CONFIDENT_PROB) & (conf_step < 0)
        conf_step[hit] = frame.step
        conf_img[hit] = frame.images[0][hit]
        last = frame.images[0]
        if progress is not None:
            progress(frame.step)
    reached = conf_step >= 0
    judge_class, nn, success = np.full(n, -1), np.full(n, np.nan), np.zeros(n, bool)
    judge_last, nn_last, success_last = scorer.verdicts(last, targets)
    judge_class[reached], nn[reached], success[reached] = scorer.verdicts(conf_img[reached], targets[reached])
    judge_last = np.where(reached, judge_last, -1)
    success_last &= reached
    if frames is not None:
        frames["last"] = last
    return {"reached": reached, "confident_step": conf_step, "judge_class": judge_class, "nn_ratio": nn,
            "nn_ratio_last": nn_last, "success": success, "judge_class_last": judge_last,
            "success_last": success_last}


def model_fingerprint(model) -> str:
    """The SHA-256 of a model's weights and, for a recipe, of its settings: what tells two
    models of one name apart (a retrained model, a recipe given a finish)."""
    recipe = getattr(model, "recipe", None)
    settings = json.dumps(recipe.to_dict(), sort_keys=True) if hasattr(recipe, "to_dict") else ""
    return hashlib.sha256(f"{state_sha256(model)}|{settings}".encode()).hexdigest()


def engine_fingerprint() -> str:
    """The SHA-256 of the engine's source files: a map made by other code (an upgrade, an edit to a
    recipe's finish) is not continued, as its rows would mix two versions of the traversal."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def read_traversals(path: str | Path) -> list[dict]:
    """The per-traversal rows of a success map's ``_traversals.csv``, typed."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != TRAVERSAL_FIELDS:
            raise ValueError(f"{path}: not a success map's traversals (columns {reader.fieldnames})")
        for r in reader:
            rows.append({"start_index": int(r["start_index"]), "source": int(r["source"]), "target": int(r["target"]),
                         "reached": r["reached"] == "1", "confident_step": int(r["confident_step"]),
                         "judge_class": int(r["judge_class"]), "nn_ratio": float(r["nn_ratio"]),
                         "nn_ratio_last": float(r["nn_ratio_last"]), "success": r["success"] == "1",
                         "judge_class_last": int(r["judge_class_last"]), "success_last": r["success_last"] == "1"})
    return rows


def _traversals_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRAVERSAL_FIELDS)
    for r in rows:
        w.writerow([r["start_index"], r["source"], r["target"], int(r["reached"]), r["confident_step"], r["judge_class"],
                    f"{r['nn_ratio']:.5g}", f"{r['nn_ratio_last']:.5g}", int(r["success"]), r["judge_class_last"],
                    int(r["success_last"])])
    return buf.getvalue().encode()


def map_from_rows(rows: list[dict], name: str, dataset: str, per_class: int, config: TraversalConfig) -> SuccessMap:
    """The cells of per-traversal ``rows``."""
    k = get_dataset(dataset).num_classes
    count, reach, success, agree, agree_n, success_last = (np.zeros((k, k)) for _ in range(6))
    growth_lists: dict[tuple[int, int], list[float]] = {}
    for r in rows:
        s, t = r["source"], r["target"]
        count[s, t] += 1
        reach[s, t] += r["reached"]
        success[s, t] += r["success"]
        success_last[s, t] += r["success_last"]
        if r["reached"]:
            agree_n[s, t] += 1
            agree[s, t] += r["judge_class"] == t
            growth_lists.setdefault((s, t), []).append(r["nn_ratio_last"] / max(r["nn_ratio"], 1e-6))
    growth = np.full((k, k), np.nan)
    for (s, t), values in growth_lists.items():
        growth[s, t] = float(np.median(values))
    return SuccessMap(name, dataset, per_class, config, count.astype(int), _ratio(reach, count),
                      _ratio(success, count), _ratio(agree, agree_n), growth, _ratio(success_last, count))


def run_successmap(model, name: str, dataset: str, per_class: int, config: TraversalConfig, out: str | Path,
                   scorer: RealismScorer | None = None, device: str = "cpu",
                   progress: Callable[[int, int, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> SuccessMap:
    """Compute (or continue) the success map of ``model`` named ``name`` and write it to ``out``.

    ``progress(done, total, what)`` is called after every step, counted over all start
    classes; ``should_stop()`` is asked at every step, and when it says so the map stops with
    :class:`SuccessMapCancelled`, the finished start classes saved. A file of other settings
    in ``out`` is not continued but replaced; the model's :func:`model_fingerprint` and the
    :func:`engine_fingerprint` count among the settings, so that a map of a changed model of the
    same name, or one made by other code, starts over.
    """
    ds = get_dataset(dataset)
    paths = successmap_paths(out, name)
    Path(out).mkdir(parents=True, exist_ok=True)
    starts = successmap_starts(dataset, per_class)
    settings = {"model": name, "dataset": ds.name, "per_class": per_class, "config": config.to_dict(),
                "confident_prob": CONFIDENT_PROB, "starts": {str(c): v for c, v in starts.items()},
                "fields": TRAVERSAL_FIELDS, "fingerprint": model_fingerprint(model), "engine": engine_fingerprint()}
    rows: list[dict] = []
    if paths["settings"].is_file() and paths["traversals"].is_file():
        try:
            if json.loads(paths["settings"].read_text()) == settings:
                rows = read_traversals(paths["traversals"])
        except (ValueError, TypeError, OSError):  # a cut or foreign file: start over
            rows = []
    write_bytes_atomic(paths["settings"], (json.dumps(settings, indent=2) + "\n").encode())
    scorer = scorer or RealismScorer(dataset=ds.name, device=device)
    images, _ = test_set(dataset)
    done_sources = {r["source"] for r in rows}
    todo = [c for c in range(ds.num_classes) if starts[c] and c not in done_sources]
    total, done = len(todo) * (config.steps + 1), 0
    for c in todo:
        pairs = [(i, t) for i in starts[c] for t in range(ds.num_classes) if t != c]
        x0 = np.stack([images[i] for i, _ in pairs]).astype(np.float32) / 255.0
        targets = np.array([t for _, t in pairs])
        base = done

        def step_done(step: int, base=base, c=c) -> None:
            if progress is not None:
                progress(base + step + 1, total, f"{ds.short(c)} → all")

        got = _measure(model, x0, targets, config, scorer, ds.shape, should_stop, step_done)
        done += config.steps + 1
        rows += [{"start_index": i, "source": c, "target": t, **{k: v[j].item() for k, v in got.items()}}
                 for j, (i, t) in enumerate(pairs)]
        write_bytes_atomic(paths["traversals"], _traversals_csv(rows))
    result = map_from_rows(rows, name, ds.name, per_class, config)
    write_successmap(result, out)
    return result


def write_successmap(result: SuccessMap, out: str | Path) -> dict[str, Path]:
    """The cells as CSV and the heat maps as PNG; returns their paths."""
    paths = successmap_paths(out, result.name)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CELL_FIELDS)
    k = result.traversals.shape[0]
    for s in range(k):
        for t in range(k):
            if s != t and result.traversals[s, t]:
                w.writerow([s, t, int(result.traversals[s, t])] + [
                    "" if not np.isfinite(v) else f"{v:.4f}"
                    for v in (result.reach[s, t], result.success[s, t], result.judge_agree[s, t], result.growth[s, t],
                              result.success_last[s, t])])
    write_bytes_atomic(paths["cells"], buf.getvalue().encode())
    save_png(paths["png"], render_successmap(result))
    return {"cells": paths["cells"], "png": paths["png"]}


def weakest_pairs(result: SuccessMap, n: int = 5) -> list[tuple[int, int, float]]:
    """The ``n`` cells of lowest success, (source, target, success), lowest first."""
    k = result.success.shape[0]
    cells = [(s, t, float(result.success[s, t])) for s in range(k) for t in range(k)
             if s != t and np.isfinite(result.success[s, t])]
    return sorted(cells, key=lambda c: (c[2], c[0], c[1]))[:n]


def _colour(v: float) -> tuple[int, int, int]:
    """White-red (0) to green (1) through yellow; grey for no value."""
    if not np.isfinite(v):
        return (225, 225, 225)
    v = float(np.clip(v, 0, 1))
    return (int(215 - 160 * max(0.0, v - 0.5) * 2), int(60 + 150 * min(1.0, v * 2)), 70)


def render_successmap(result: SuccessMap, cell: int = 34) -> Image.Image:
    """Four heat maps, two by two: success at the confident point and at the last frame (top),
    the judge's agreement at the confident point (0–100 %) and noise growth (shown as how little
    noise grows: 1 → green, 2 or more → red) below; source rows, target columns."""
    ds = get_dataset(result.dataset)
    k = result.success.shape[0]
    names = [ds.short(c) for c in range(k)]
    label_w = 12 + 7 * max(len(n) for n in names)
    percent = (lambda v: v, lambda v: f"{100 * v:.0f}")
    # (caption, values, colour scale, cell text, the start classes' shares to name the weakest of)
    panels = [("success % (confident point)", result.success, *percent, result.by_source()),
              ("success % (last frame)", result.success_last, *percent, result.by_source(last=True)),
              ("judge agrees % (confident point)", result.judge_agree, *percent, None),
              ("noise growth", result.growth, lambda v: 1.0 - (v - 1.0), lambda v: f"{v:.2f}", None)]
    pw, head, top = label_w + k * cell + 16, 48, 40  # a panel's width; the title's height; a panel's caption
    ph = top + k * cell + 30
    img = Image.new("RGB", (2 * pw + 8, head + 2 * ph), "white")
    draw = ImageDraw.Draw(img)
    small, title = font(11), font(14)
    cfg = result.config
    draw.text((6, 4), f"{result.name} on {ds.title}: source (rows) -> target (columns); {result.per_class} starts "
                      f"per class, {cfg.steps} steps of {cfg.step_size} {cfg.norm.upper()}", fill="black", font=title)
    draw.text((6, 24), f"success {100 * result.overall():.0f} % at the confident point, "
                       f"{100 * result.overall(last=True):.0f} % at the last frame", fill="black", font=title)
    for p, (label, values, to_colour, text, shares) in enumerate(panels):
        x0, y0 = 4 + (p % 2) * pw, head + (p // 2) * ph
        draw.text((x0 + label_w, y0), label, fill="black", font=title)
        for t in range(k):
            draw.text((x0 + label_w + t * cell + cell // 2 - 3 * len(names[t]), y0 + top - 14), names[t],
                      fill="black", font=small)
        for s in range(k):
            y = y0 + top + s * cell
            draw.text((x0 + 4, y + cell // 2 - 6), names[s], fill="black", font=small)
            for t in range(k):
                v = values[s, t]
                box = (x0 + label_w + t * cell, y, x0 + label_w + (t + 1) * cell - 2, y + cell - 2)
                draw.rectangle(box, fill=_colour(to_colour(v)) if s != t else (255, 255, 255), outline=(200, 200, 200))
                if s != t and np.isfinite(v):
                    draw.text((box[0] + 4, box[1] + cell // 2 - 7), text(v), fill="black", font=small)
        if shares is not None and np.isfinite(shares).any():
            worst = int(np.nanargmin(shares))
            draw.text((x0 + 4, y0 + top + k * cell + 8), f"weakest start class: {names[worst]} "
                      f"({100 * shares[worst]:.0f} %)", fill="black", font=small)
    return img
