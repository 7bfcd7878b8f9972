"""Which recipe settings lift the weakest start classes? Success by start class, on held-out starts.

    python benchmarks/bench_start_class.py [--variants shipped sigma_max=0.75 ...] [--sources 0 4 2 6]
        [--from 20] [--to 40] [--recipe realistic] [--objective logprob] [--steps 200] [--look N]
        [--out docs] [--name start_class_sweep]

Each variant is the ``--recipe`` (the shipped ``realistic`` by default) with some of its settings
changed (``KEY=VALUE``, several joined by ``,``: ``sigma_max=0.7,prior_weight=0.2``; a list of
models as ``models=robust+robust-eps3``; a value that is not JSON is a string, as in
``prior=runs/score-wide.safetensors``; ``shipped``: none changed). Each traverses the test
digits number ``--from`` … ``--to`` - 1 of every ``--sources`` class (counted among the first
1,000, as the success map counts them; the map itself uses 0–19, so the default 20–39 are
held out from it) to the 9 other classes, ``--steps`` L2 steps of 0.1 (200 unless told), measured as the success map
measures (:func:`trav_gui.engine.output.successmap._measure`: success at the confident point
and at the last frame). Prints, per variant, success by start class, and writes
``<out>/<name>.json`` after each variant (a rerun skips the variants the file holds). With
``--look N`` it also draws, per variant, ``<out>/<name>_<variant>_nearest.png``: for each start
class up to N traversals that failed at the last frame although the judge says the target (the
nearest-real test failed them), their last frame, the nearest real digit of the target the test
compares it with, and the two's difference: what the rule calls too far.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_realism import frames_figure  # beside this script

from trav_gui.engine.core.objectives import OBJECTIVES
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import get_dataset, test_set
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.loading import load_recipe, resolve_model_path
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.output.successmap import STARTS_POOL, _measure
from trav_gui.engine.realism import RealismScorer


def too_far(got: dict, targets: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` indices of traversals that failed at the last frame although the judge says
    their target there: the ones the nearest-real test failed."""
    return np.flatnonzero(~got["success_last"] & (got["judge_class_last"] == targets))[:n]


def nearest_rows(scorer: RealismScorer, last: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of a ``--look`` figure: the frames, each one's nearest real digit of its target
    (the one the success rule measures it against) and their absolute difference."""
    ref = scorer.reference
    near = np.stack([ref.image(int(ref.nearest(f[None], int(t))[1][0])) for f, t in zip(last, targets)]) \
        if len(last) else last
    return {"last frame (the judge agrees)": last, "nearest real digit, same class": near,
            "|difference|": np.abs(last - near)}


def parse_variant(spec: str) -> dict:
    """``"sigma_max=0.7,models=robust+robust-eps3"`` -> the settings it changes (``shipped``: none)."""
    if spec == "shipped":
        return {}
    changes = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"a variant is KEY=VALUE[,KEY=VALUE...] or 'shipped', got {spec!r}")
        if key == "models":
            changes[key] = value.split("+")
        else:
            try:
                changes[key] = json.loads(value)
            except ValueError:  # a name or a path: prior=/runs/score-wide.safetensors
                changes[key] = value
    return changes


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="realistic", help="the recipe whose settings the variants change")
    p.add_argument("--variants", nargs="+", default=["shipped", "sigma_max=0.75"])
    p.add_argument("--sources", nargs="+", type=int, default=None, help="start classes (default: all)")
    p.add_argument("--from", dest="first", type=int, default=20, help="first start of each class (its index)")
    p.add_argument("--to", dest="last", type=int, default=40, help="one past the last start of each class")
    p.add_argument("--objective", default="logprob", choices=sorted(OBJECTIVES),
                   help="what every variant's traversal climbs (the app's default: logprob)")
    p.add_argument("--steps", type=int, default=200,
                   help="steps per traversal (default: 200; a recipe with a retry needs about 300)")
    p.add_argument("--look", type=int, default=0, metavar="N",
                   help="also draw up to N frames per start class that the nearest-real test failed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--name", default="start_class_sweep")
    args = p.parse_args(argv)
    if args.look < 0:
        p.error("--look must be 0 or more")
    if args.steps < 1:
        p.error("--steps must be 1 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model_path(args.recipe)
    if path.suffix != ".recipe":
        p.error(f"{args.recipe} is not a recipe")
    base = json.loads(path.read_text())
    try:
        variants = {v: Recipe.from_dict({**base, **parse_variant(v)}) for v in args.variants}
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    models = {name: load_recipe(recipe) for name, recipe in variants.items()}  # each loaded once, errors first
    dataset = next(iter(models.values())).dataset
    ds = get_dataset(dataset)
    sources = args.sources if args.sources is not None else list(range(ds.num_classes))
    images, labels = test_set(dataset)
    pool = np.asarray(labels[:STARTS_POOL])
    scorer = RealismScorer(dataset=dataset, device="cpu")
    config = TraversalConfig(objective=args.objective, steps=args.steps)
    out = args.out / f"{args.name}.json"
    settings = {"recipe": args.recipe, "recipe_settings": base, "sources": sources, "from": args.first,
                "to": args.last, "steps": config.steps, "step_size": config.step_size}
    if args.objective != "logprob":  # files written before the option keep matching
        settings["objective"] = args.objective
    result = {**settings, "variants": {}}
    if out.is_file():
        old = json.loads(out.read_text())
        if all(old.get(k) == v for k, v in settings.items()):
            result = old
    for name, recipe in variants.items():
        if name in result["variants"]:
            print(f"{name}: in {out} already", file=sys.stderr)
            continue
        model = models[name]
        t0 = time.time()
        rows, look = {}, []
        for c in sources:
            idx = np.flatnonzero(pool == c)[args.first:args.last]
            pairs = [(i, t) for i in idx for t in range(ds.num_classes) if t != c]
            x0 = np.stack([images[i] for i, _ in pairs]).astype(np.float32) / 255.0
            targets = np.array([t for _, t in pairs])
            frames = {}
            got = _measure(model, x0, targets, config, scorer, ds.shape, None, None, frames)
            if args.look:
                pick = too_far(got, targets, args.look)
                look.append((frames["last"][pick], targets[pick]))
            rows[str(c)] = {
                "traversals": len(targets), "success": float(got["success"].mean()),
                "success_last": float(got["success_last"].mean()),
                "by_target": {str(t): float(got["success"][targets == t].mean()) for t in np.unique(targets)},
                "by_target_last": {str(t): float(got["success_last"][targets == t].mean())
                                   for t in np.unique(targets)}}
            print(f"  {name} start {c}: {100 * rows[str(c)]['success']:.0f} % "
                  f"({100 * rows[str(c)]['success_last']:.0f} % at the last frame)", file=sys.stderr, flush=True)
        n = sum(r["traversals"] for r in rows.values())
        result["variants"][name] = {
            "settings": recipe.to_dict(), "seconds": round(time.time() - t0, 1),
            "success": sum(r["success"] * r["traversals"] for r in rows.values()) / n,
            "success_last": sum(r["success_last"] * r["traversals"] for r in rows.values()) / n,
            "by_source": rows}
        args.out.mkdir(parents=True, exist_ok=True)
        if look and sum(len(t) for _, t in look):
            slug = re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:60]
            frames_figure(nearest_rows(scorer, np.concatenate([f for f, _ in look]),
                                       np.concatenate([t for _, t in look])),
                          args.out / f"{args.name}_{slug}_nearest.png")
        write_bytes_atomic(out, (json.dumps(result, indent=1) + "\n").encode())
        v = result["variants"][name]
        print(f"{name:28s} all {100 * v['success']:.1f} % / {100 * v['success_last']:.1f} % | "
              + " ".join(f"{c}:{100 * r['success']:.0f}/{100 * r['success_last']:.0f}" for c, r in rows.items()),
              flush=True)
    return result


if __name__ == "__main__":
    main()
