"""The success map's held-out rows: a recipe's success at the last frame from the next starts of each class.

    python benchmarks/bench_heldout_map.py [--recipe realistic] [--without-retry] [--steps 300]
        [--skip 20] [--starts 20] [--out docs/heldout_map_realistic.json]

``trav-gui successmap --starts 20`` traverses the first 20 test digits of each class to every other
class; settings chosen by looking at that map (``realistic``'s ``retry_below``) are checked here on
starts it never saw: starts ``--skip`` to ``--skip + --starts`` of each class (the same order,
:func:`trav_gui.engine.output.successmap.successmap_starts`), measured as the map measures them
(:func:`trav_gui.engine.output.successmap._measure`: the judge and the nearest real digit at the last
frame). ``--without-retry`` takes the recipe without its retry (as it was before it had one). Prints
success by start class and writes them, with every traversal's verdict, to ``--out``: after each
class, so an interrupted run loses at most the class in progress, and a rerun with the same recipe,
steps and starts continues from the classes ``--out`` already holds (``--fresh``: start again).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import get_dataset, test_set
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.loading import load_recipe, read_recipe, resolve_model_path
from trav_gui.engine.output.successmap import _measure, successmap_starts
from trav_gui.engine.realism import RealismScorer


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="realistic")
    p.add_argument("--without-retry", action="store_true")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--skip", type=int, default=20, help="starts of each class left out (the map's)")
    p.add_argument("--starts", type=int, default=20, help="starts of each class measured")
    p.add_argument("--out", type=Path, default=Path("docs/heldout_map.json"))
    p.add_argument("--fresh", action="store_true", help="ignore the classes --out already holds")
    args = p.parse_args(argv)
    recipe = read_recipe(resolve_model_path(args.recipe))
    if args.without_retry:
        recipe = recipe.first_pull()
    ds = get_dataset("mnist")
    images, _ = test_set("mnist")
    starts = successmap_starts("mnist", args.skip + args.starts)
    scorer = RealismScorer(dataset="mnist")
    config = TraversalConfig(steps=args.steps, step_size=0.1)
    result = {"recipe": recipe.to_dict(), "config": config.to_dict(), "starts": f"{args.skip}-{args.skip + args.starts - 1}",
              "by_start_class_last": {}, "success_last": {}}
    earlier = _earlier(args.out, result) if not args.fresh else None
    if earlier is not None:
        result = earlier
        print(f"continuing {args.out}: start classes {', '.join(result['success_last'])} already measured",
              file=sys.stderr)
    t0 = time.perf_counter()
    for c in range(ds.num_classes):
        if str(c) in result["success_last"]:
            continue
        pairs = [(i, t) for i in starts[c][args.skip:] for t in range(ds.num_classes) if t != c]
        x0 = np.stack([images[i] for i, _ in pairs]).astype(np.float32) / 255.0
        targets = np.array([t for _, t in pairs])
        got = _measure(load_recipe(recipe), x0, targets, config, scorer, ds.shape, None, None)
        result["by_start_class_last"][str(c)] = float(got["success_last"].mean())
        result["success_last"][str(c)] = got["success_last"].astype(int).tolist()
        print(f"start {c}: {got['success_last'].mean():.1%} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        write_bytes_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    result["overall_last"] = float(np.mean([v for row in result["success_last"].values() for v in row]))
    print(f"all: {result['overall_last']:.1%}; by start class: "
          + ", ".join(f"{c} {v:.1%}" for c, v in result["by_start_class_last"].items()))
    write_bytes_atomic(args.out, (json.dumps(result, indent=1) + "\n").encode())
    return result


def _earlier(out: Path, fresh: dict) -> dict | None:
    """The partial or finished result in ``out`` if it was measured with ``fresh``'s recipe, steps and
    starts (anything else is measured again, not mixed in); None otherwise."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return None
    same = all(old.get(k) == fresh[k] for k in ("recipe", "config", "starts"))
    return old if same and isinstance(old.get("success_last"), dict) else None


if __name__ == "__main__":
    main()
