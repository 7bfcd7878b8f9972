"""A second pull where the first fails its own critic? The recipe's endpoint or another recipe's, chosen per traversal.

    python benchmarks/bench_fallback.py [--recipe realistic] [--fallback realistic-stochastic]
        [--thresholds -2 0 2] [--start-class 0] [--out docs] [--name fallback]

An offline measure of what became the shipped recipe's ``retry`` (``realistic`` retries with
``realistic-stochastic``'s pull below a critic logit of −4: :mod:`trav_gui.engine.models.recipes`);
the retry itself is measured by the success map and ``bench_realism``. Each recipe is taken without
its own retry. Both recipes traverse the same starts to
every other class (200 L2 steps of 0.1, measured as the success map measures:
:func:`trav_gui.engine.output.successmap._measure`); the ``--fallback`` recipe is given
``--recipe``'s critic when it has none, so that both end with the same finish. Then, per
traversal, the fallback's last frame replaces the recipe's where the recipe's own signals reject
it — its critic's logit of the last frame (seen centred as the critic step sees it) below a
threshold, or its own p(target) below its stop rule's confidence — and the fallback's own
p(target) holds. Nothing here reads the judge or the reference: those only score the result.

Two sets: the success map's start class ``--start-class`` (its 20 starts × 9 targets, where the
recipe is weakest) and the 450 held-out traversals of ``bench_realism --first 200 --digits 50``
(test digits 200–249), where it also runs the two-sample test against real test digits
(:func:`bench_realism.two_sample_accuracy`, :func:`bench_realism.real_pool`). Prints, per
threshold, how often the fallback is taken, success at the last frame on both sets and the
two-sample accuracy; writes ``<out>/<name>.json``. The traversals are kept in
``<out>/<name>_cache/`` (a rerun with the same recipes reuses them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_realism import real_pool, two_sample_accuracy  # beside this script

from trav_gui.engine.core.centring import centring_offsets, shift_batch
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import get_dataset, test_set
from trav_gui.engine.files import atomic_paths, write_bytes_atomic
from trav_gui.engine.models.loading import load_recipe, read_recipe, resolve_model_path
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.output.successmap import (
    _measure,
    engine_fingerprint,
    successmap_starts,
)
from trav_gui.engine.realism import CONFIDENT_PROB, RealismScorer

CONFIG = TraversalConfig(steps=200, step_size=0.1)


def the_recipe(name: str, critic_of: Recipe | None = None) -> Recipe:
    """The recipe ``name`` without its retry (this measures the choice a retry makes), given
    ``critic_of``'s critic when it has none."""
    recipe = read_recipe(resolve_model_path(name)).first_pull()
    if critic_of is not None and recipe.critic is None and critic_of.critic is not None:
        recipe = Recipe.from_dict({**recipe.to_dict(), "critic": critic_of.critic,
                                   "critic_steps": critic_of.critic_steps, "critic_step": critic_of.critic_step})
    return recipe


def pairs_of(which: str, start_class: int) -> list[tuple[int, int]]:
    _, labels = test_set("mnist")
    if which == "map":
        return [(i, t) for i in successmap_starts("mnist", 20)[start_class] for t in range(10) if t != start_class]
    return [(i, t) for i in range(200, 250) for t in range(10) if t != int(labels[i])]


def traversals(recipe: Recipe, pairs, scorer: RealismScorer, cache: Path) -> dict[str, np.ndarray]:
    """The last frames, success at the last frame, own p(target) and critic logit of ``recipe``
    on ``pairs``, from ``cache`` when it holds them for this recipe, these pairs and this engine."""
    key = hashlib.sha256(json.dumps([recipe.to_dict(), pairs, engine_fingerprint()]).encode()).hexdigest()[:16]
    path = cache / f"{key}.npz"
    if path.is_file():
        return dict(np.load(path))
    images, _ = test_set("mnist")
    x0 = np.stack([images[i] for i, _ in pairs]).astype(np.float32) / 255.0
    targets = np.array([t for _, t in pairs])
    guided = load_recipe(recipe)
    frames: dict = {}
    t0 = time.perf_counter()
    got = _measure(guided, x0, targets, CONFIG, scorer, get_dataset("mnist").shape, None, None, frames)
    last = torch.from_numpy(np.array(frames["last"])).reshape(len(pairs), 1, 28, 28)
    with torch.no_grad():
        p = torch.softmax(guided(last), 1)[torch.arange(len(pairs)), torch.from_numpy(targets)]
        start = torch.from_numpy(x0).reshape(len(pairs), 1, 28, 28)
        centred = shift_batch(last, centring_offsets(start, recipe.max_centre_shift)) if recipe.centre else last
        critic = guided.critic(centred).reshape(-1) if guided.critic is not None else torch.full((len(pairs),), np.nan)
    out = {"last": last.numpy(), "success": got["success_last"], "p": p.numpy(), "critic": critic.numpy(),
           "targets": targets}
    print(f"  {len(pairs)} traversals in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_paths(path) as (tmp,), open(tmp, "wb") as f:
        np.savez_compressed(f, **out)
    return out


def fallback_taken(first: dict, second: dict, threshold: float) -> np.ndarray:
    """Where the fallback replaces the first recipe's endpoint: the first's critic logit is
    below ``threshold`` or its own p(target) below the confidence, and the second's p(target) holds."""
    return ((first["critic"] < threshold) | (first["p"] < CONFIDENT_PROB)) & (second["p"] >= CONFIDENT_PROB)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="realistic")
    p.add_argument("--fallback", default="realistic-stochastic")
    p.add_argument("--thresholds", nargs="+", type=float, default=[-2.0, 0.0, 2.0])
    p.add_argument("--start-class", type=int, default=0, choices=range(10))
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--name", default="fallback")
    args = p.parse_args(argv)
    first = the_recipe(args.recipe)
    if first.critic is None:
        p.error(f"{args.recipe} has no critic: the fallback is taken where its critic rejects an endpoint")
    second = the_recipe(args.fallback, critic_of=first)
    scorer = RealismScorer(dataset="mnist")
    images, labels = test_set("mnist")
    cache = args.out / f"{args.name}_cache"
    runs = {}
    for which in ("map", "held_out"):
        pairs = pairs_of(which, args.start_class)
        print(f"{which}: {args.recipe}, then {args.fallback}", file=sys.stderr)
        runs[which] = [traversals(r, pairs, scorer, cache) for r in (first, second)]
    real = real_pool(images, labels, runs["held_out"][0]["targets"])
    result = {"recipe": first.to_dict(), "fallback": second.to_dict(), "start_class": args.start_class,
              "config": CONFIG.to_dict(), "rows": []}
    for threshold in [None, *args.thresholds, "always"]:
        row: dict = {"threshold": threshold}
        for which, (a, b) in runs.items():
            take = (np.zeros(len(a["p"]), bool) if threshold is None else
                    (b["p"] >= CONFIDENT_PROB) if threshold == "always" else fallback_taken(a, b, threshold))
            row[which] = {"fallback": float(take.mean()), "success_last": float(np.where(take, b["success"], a["success"]).mean())}
            if which == "held_out":
                last = np.where(take[:, None, None, None], b["last"], a["last"])
                row[which]["two_sample"] = two_sample_accuracy(last, real.reshape(len(real), *last.shape[1:]))
        result["rows"].append(row)
        label = "never" if threshold is None else "always" if threshold == "always" else f"critic < {threshold:g}"
        print(f"{label:>12}: start {args.start_class}: fallback {row['map']['fallback']:.0%}, success "
              f"{row['map']['success_last']:.1%}; held-out 450: fallback {row['held_out']['fallback']:.0%}, success "
              f"{row['held_out']['success_last']:.1%}, two-sample {row['held_out']['two_sample']:.1%}")
        write_bytes_atomic(args.out / f"{args.name}.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


if __name__ == "__main__":
    main()
