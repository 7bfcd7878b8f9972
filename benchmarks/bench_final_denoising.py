"""Levers for the two-sample test, measured outside the recipe: finish the recipe's endpoints.

    python benchmarks/bench_final_denoising.py [--first 200] [--digits 50] [--cascade 0.3 0.1 0.05]
        [--resample 0.5:20 0.7:20:1 ...] [--best-of K [--typical] [--accept P]] [--real-floor] [--prior PRIOR]
        [--start-class C ...] [--name NAME]

Traverses test digits ``--first`` … ``+--digits`` (with ``--start-class C …``: the ``--first``-th to
the ``+--digits``-th test digit of each class C) to each of the 9 other classes with the shipped
``realistic`` recipe (200 L2 steps of 0.1), then replaces each endpoint (the frame its stop rule
stopped at) by its prior's clean estimate D(x, σ) (Tweedie's formula: what a score-based
sampler's last step does), seen centred as the recipe sees it, at each σ alone and at the
``--cascade`` in turn, and, per ``--resample SIGMA:STEPS[:BETA]``, resampled by the prior from the
endpoint plus noise of SIGMA (an ancestral sampler down to σ 0.02 in STEPS steps, SDEdit; with
BETA the recipe's classifiers' normalized gradient toward the target, times BETA, is added to
every clean estimate but the last: classifier guidance). ``--best-of K`` also draws each resample
K times (seeds 0 … K-1) and keeps, per endpoint, the draw the recipe's own classifiers give the
highest probability of the target (seen centred; the judge plays no part); with ``--typical`` also
the draw the prior itself finds most typical (lowest denoising score-matching loss), and the most
typical of the cascade's frame and the draws; with ``--accept P`` also the first draw the
classifiers still call the target with p ≥ P, else the cascade's frame (rejection sampling: a
typical draw of the class, not the boldest). ``--real-floor`` resamples real test
digits the same way (the test against other real digits: does the prior itself give frames away?
and does what it redraws still pass the success rule, as real digits do?). ``--prior`` (a prior's
name or ``.safetensors`` path) finishes with another prior than the recipe's: the traversals, and
so the endpoints, stay the shipped recipe's, and only the finish changes.
The recipe is the shipped one *before* its finish (``REALISTIC_CENTRED``): its endpoints are the
frames its stop rule stops at. For each it prints success at the endpoint (judge + nearest real), the
classifier two-sample test against real test digits of the same classes, and the share of
black and hazy pixels. Writes ``<out>/<name>.json`` (``realism_final_denoising``) and a frames PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from bench_realism import (
    REALISTIC_CENTRED,
    follow,
    frames_figure,
    pixel_profile,
    real_pool,
    two_sample_accuracy,
)

from trav_gui.engine.core.centring import centring_offsets, shift_batch
from trav_gui.engine.core.objectives import logprob
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import test_set
from trav_gui.engine.models.loading import load_model, load_recipe
from trav_gui.engine.models.priors import load_prior
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.realism import RealismScorer


def denoised(prior, images: np.ndarray, offsets: torch.Tensor, sigmas) -> np.ndarray:
    """``images`` (N, H, W) replaced by the prior's clean estimate at each σ of ``sigmas`` in turn,
    each image moved by its ``offsets`` while the prior sees it (as the recipe does)."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None]
    with torch.no_grad():
        for sigma in sigmas:
            x = shift_batch(prior(shift_batch(x, offsets), sigma), -offsets).clamp_(0.0, 1.0)
    return x[:, 0].numpy()


def resampled(recipe, images: np.ndarray, offsets: torch.Tensor, targets: np.ndarray, sigma: float, steps: int,
              beta: float = 0.0, seed: int = 0) -> np.ndarray:
    """``images`` resampled by the recipe's prior from ``images + sigma·z`` (an ancestral sampler,
    σ geometric from ``sigma`` to 0.02 over ``steps``), seen centred; with ``beta``, classifier
    guidance on every clean estimate but the last."""
    g = torch.Generator().manual_seed(seed)
    x = shift_batch(torch.from_numpy(np.ascontiguousarray(images))[:, None], offsets)
    x = x + sigma * torch.randn(x.shape, generator=g)
    sigmas = np.geomspace(sigma, 0.02, steps)
    rows, t = torch.arange(len(x)), torch.from_numpy(targets)
    for i, s in enumerate(sigmas):
        with torch.no_grad():
            clean = recipe.prior(x, float(s))
        if i + 1 == len(sigmas):
            x = clean
            break
        if beta:
            c = clean.clamp(0, 1).requires_grad_(True)
            grad, = torch.autograd.grad(torch.log_softmax(recipe.classifier(c), -1)[rows, t].sum(), c)
            clean = clean + beta * grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
        nxt = float(sigmas[i + 1])
        up = np.sqrt(max(nxt ** 2 * (s ** 2 - nxt ** 2) / s ** 2, 0.0))
        down = np.sqrt(nxt ** 2 - up ** 2)
        x = clean + down * (x - clean) / s + up * torch.randn(x.shape, generator=g)
    return shift_batch(x.clamp(0, 1), -offsets)[:, 0].detach().numpy()


def target_logprobs(classifier, draws: np.ndarray, offsets: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """(K, N): the log-probability of each endpoint's target under ``classifier`` for each of
    ``draws`` (K, N, H, W), each image seen moved by its ``offsets`` (as the recipe sees it)."""
    t = torch.from_numpy(targets)
    with torch.no_grad():
        return torch.stack([logprob(classifier(shift_batch(torch.from_numpy(d)[:, None], offsets)), t)
                            for d in draws]).numpy()


def best_of(classifier, draws: np.ndarray, offsets: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """Per endpoint, the draw of ``draws`` (K, N, H, W) whose log-probability of its target under
    ``classifier`` (each image seen moved by its ``offsets``, as the recipe sees it) is highest."""
    scores = target_logprobs(classifier, draws, offsets, targets)
    return draws[scores.argmax(0), np.arange(draws.shape[1])]


def first_accepted(classifier, draws: np.ndarray, offsets: torch.Tensor, targets: np.ndarray, p_min: float,
                   fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling: per endpoint, the first of ``draws`` (K, N, H, W) that ``classifier``
    (seen as :func:`best_of` sees it) still calls its target with p ≥ ``p_min``; where none does,
    its ``fallback`` frame (N, H, W). Unlike :func:`best_of` it keeps a typical accepted draw, not
    the one the classifier likes best. Also returns which endpoints had an accepted draw."""
    ok = target_logprobs(classifier, draws, offsets, targets) >= np.log(p_min)
    has = ok.any(0)
    chosen = draws[ok.argmax(0), np.arange(draws.shape[1])]
    return np.where(has[:, None, None], chosen, fallback), has


def accepted_name(spec: str, k: int, p_min: float) -> str:
    """The variant's name of ``--accept``: the first of ``k`` redraws from ``spec`` with p ≥ ``p_min``."""
    return f"resampled from {spec}, first of {k} with p >= {p_min:g}, else the cascade"


def draw_counts(k: int) -> list[int]:
    """The numbers of draws ``--accept`` is measured with: 2, 4, 8, … below ``k``, and ``k``."""
    return sorted({2 ** i for i in range(1, k.bit_length()) if 2 ** i < k} | {k})


def denoising_error(prior, images: np.ndarray, offsets: torch.Tensor, sigmas=(0.1, 0.2, 0.3, 0.5), repeats: int = 4,
                    seed: int = 123) -> np.ndarray:
    """Per image of ``images`` (N, H, W), seen moved by its ``offsets``: the prior's denoising
    score-matching loss, the mean over ``sigmas`` and ``repeats`` noise draws of
    ‖D(x + σz, σ) − x‖² / σ², lower where the prior finds the image typical. The noise depends
    only on ``seed``, so the candidates of one endpoint are compared on the same draws."""
    x = shift_batch(torch.from_numpy(np.ascontiguousarray(images))[:, None], offsets)
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(len(x))
    with torch.no_grad():
        for sigma in sigmas:
            for _ in range(repeats):
                total += ((prior(x + sigma * torch.randn(x.shape, generator=g), sigma) - x) ** 2).flatten(1).sum(1) / sigma ** 2
    return (total / (len(sigmas) * repeats)).numpy()


def most_typical(prior, candidates: np.ndarray, offsets: torch.Tensor) -> np.ndarray:
    """Per endpoint, the candidate of ``candidates`` (K, N, H, W) with the lowest
    :func:`denoising_error` (the prior's choice; no classifier or judge)."""
    return lowest(candidates, denoising_errors(prior, candidates, offsets))


def denoising_errors(prior, candidates: np.ndarray, offsets: torch.Tensor) -> np.ndarray:
    """(K, N) :func:`denoising_error` of each of ``candidates`` (K, N, H, W)."""
    return np.stack([denoising_error(prior, c, offsets) for c in candidates])


def lowest(candidates: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Per endpoint, the candidate of ``candidates`` (K, N, H, W) whose ``errors`` (K, N) is lowest."""
    return candidates[errors.argmin(0), np.arange(candidates.shape[1])]


def starts_and_targets(labels: np.ndarray, first: int, digits: int, start_class=None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test digits ``first`` … ``first + digits`` (with ``start_class``: those of each class
    in it), each repeated for the 9 classes it is traversed to, and those targets."""
    chosen = (np.arange(first, first + digits) if start_class is None
              else np.concatenate([np.flatnonzero(labels == c)[first: first + digits] for c in start_class]))
    return chosen, np.repeat(chosen, 9), np.array([t for i in chosen for t in range(10) if t != labels[i]])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--digits", type=int, default=50)
    p.add_argument("--start-class", type=int, nargs="+", default=None, metavar="C",
                   help="start from test digits of these classes only: the --first-th to the (--first + --digits)-th "
                        "of each (--first 0 --digits 20 and every class: the success map's starts)")
    p.add_argument("--sigmas", nargs="+", type=float, default=[0.3, 0.15, 0.08], help="each alone")
    p.add_argument("--cascade", nargs="+", type=float, default=[0.3, 0.1, 0.05], help="in turn")
    p.add_argument("--resample", nargs="*", default=[], metavar="SIGMA:STEPS[:BETA]",
                   help="resample each endpoint by the prior from this noise level (see above)")
    p.add_argument("--best-of", type=int, default=1, metavar="K",
                   help="also keep, of K draws of each resample, the one the recipe's classifiers like best")
    p.add_argument("--typical", action="store_true",
                   help="with --best-of: also keep the draw the prior finds most typical (lowest denoising "
                        "error), and the most typical of the cascade's frame and the draws")
    p.add_argument("--accept", type=float, default=None, metavar="P",
                   help="with --best-of: also keep the first draw the recipe's classifiers call the target with "
                        "p >= P, else the cascade's frame (rejection sampling)")
    p.add_argument("--real-floor", action="store_true",
                   help="also resample real test digits (2000 on) and test them against real ones")
    p.add_argument("--prior", default=None, help="finish with this prior (name or .safetensors path), "
                   "not the recipe's")
    p.add_argument("--name", default="realism_final_denoising", help="the JSON's and the PNG's file name")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    if args.best_of < 1:
        p.error("--best-of must be at least 1")
    if args.accept is not None and not (args.best_of >= 2 and 0 < args.accept < 1):
        p.error("--accept P needs --best-of 2 or more and P in (0, 1)")
    if args.start_class is not None and not all(0 <= c <= 9 for c in args.start_class):
        p.error("--start-class takes digits, 0 to 9")
    if args.typical and args.best_of < 2:
        p.error("--typical chooses among draws: give --best-of 2 or more")
    images, labels = test_set("mnist")
    digits, starts, targets = starts_and_targets(labels, args.first, args.digits, args.start_class)
    x0 = images[starts].astype(np.float32) / 255.0
    recipe = load_recipe(Recipe(**REALISTIC_CENTRED))
    run = follow(recipe, x0, targets, TraversalConfig(steps=200, step_size=0.1))
    scorer = RealismScorer(judge=load_model("judge"))
    real = real_pool(images, labels, targets)
    offsets = centring_offsets(torch.from_numpy(x0)[:, None], recipe.recipe.max_centre_shift)
    if args.prior is not None:  # the endpoints above are the shipped recipe's; the finish is this prior's
        recipe.prior = load_prior(args.prior)[0]
    variants = {"endpoint (shipped)": run["last_img"]}
    accepted = {}  # per --accept variant: the share of endpoints with an accepted draw
    for sigma in args.sigmas:
        variants[f"denoised at {sigma:g}"] = denoised(recipe.prior, run["last_img"], offsets, [sigma])
    cascade = "denoised at " + " then ".join(f"{s:g}" for s in args.cascade)
    variants[cascade] = denoised(recipe.prior, run["last_img"], offsets, args.cascade)
    for spec in args.resample:
        sigma, steps, *beta = spec.split(":")
        draws = [resampled(recipe, run["last_img"], offsets, targets, float(sigma), int(steps),
                           float(beta[0]) if beta else 0.0, seed=seed) for seed in range(args.best_of)]
        variants[f"resampled from {spec}"] = draws[0]
        if args.best_of > 1:
            draws = np.stack(draws)
            variants[f"resampled from {spec}, best of {args.best_of}"] = best_of(recipe.classifier, draws,
                                                                                 offsets, targets)
            if args.accept is not None:  # the first k draws, for k = 2, 4, … up to K (seeds 0 … k-1)
                for k in draw_counts(args.best_of):
                    name = accepted_name(spec, k, args.accept)
                    variants[name], has = first_accepted(recipe.classifier, draws[:k], offsets, targets, args.accept,
                                                         variants[cascade])
                    accepted[name] = float(has.mean())
            if args.typical:  # the cascade's frame and the draws, each scored once
                candidates = np.concatenate([variants[cascade][None], draws])
                errors = denoising_errors(recipe.prior, candidates, offsets)
                variants[f"resampled from {spec}, most typical of {args.best_of}"] = lowest(candidates[1:], errors[1:])
                variants[f"the cascade or a resample from {spec}, most typical of {args.best_of + 1}"] = lowest(
                    candidates, errors)
    result = {"traversals": len(targets), "first": args.first, "digits": args.digits,
              "prior": args.prior or recipe.recipe.prior, "variants": {}}
    sources = labels[starts]
    for name, last in variants.items():
        ok = scorer.verdicts(last, targets)[2]  # success at the endpoint, per traversal
        result["variants"][name] = {"success_last": float(ok.mean()),
                                    "success_last_by_start": {int(c): float(ok[sources == c].mean())
                                                              for c in np.unique(sources)},
                                    "success_last_by_target": {int(c): float(ok[targets == c].mean())
                                                               for c in np.unique(targets)},
                                    "two_sample_last": two_sample_accuracy(last, real), "pixels": pixel_profile(last)}
        v = result["variants"][name]
        if name in accepted:
            v["accepted"] = accepted[name]
        print(f"{name:<32} success at the endpoint {100 * v['success_last']:.1f} %, two-sample "
              f"{100 * v['two_sample_last']:.1f} %, black {100 * v['pixels']['black']:.0f} %, haze "
              f"{100 * v['pixels']['haze']:.0f} %, start 0 {100 * v['success_last_by_start'].get(0, np.nan):.0f} %",
              flush=True)
    result["real_pixels"] = pixel_profile(real)
    if args.real_floor:  # real digits of the same classes, not in the pool, resampled alike
        other_x, other_y = images[2000:4000].astype(np.float32) / 255.0, labels[2000:4000]
        order = np.argsort(targets, kind="stable")
        picked = np.concatenate([other_x[other_y == c][:k] for c, k in zip(*np.unique(targets, return_counts=True))])
        own = centring_offsets(torch.from_numpy(picked)[:, None], recipe.recipe.max_centre_shift)
        own_class = targets[order]
        result["real_floor"] = {"real": two_sample_accuracy(picked, real)}
        result["real_floor_success"] = {"real": float(scorer.verdicts(picked, own_class)[2].mean())}
        floor_cascade = denoised(recipe.prior, picked, own, args.cascade)
        for spec in args.resample:
            sigma, steps, *beta = spec.split(":")
            draws = [resampled(recipe, picked, own, own_class, float(sigma), int(steps), float(beta[0]) if beta else 0.0,
                               seed=seed) for seed in range(args.best_of if args.accept is not None else 1)]
            outs = {f"resampled from {spec}": draws[0]}
            if args.accept is not None:  # real digits redrawn as the endpoints are: is the price the prior's?
                stacked = np.stack(draws)
                outs.update({accepted_name(spec, k, args.accept):
                             first_accepted(recipe.classifier, stacked[:k], own, own_class, args.accept,
                                            floor_cascade)[0] for k in draw_counts(args.best_of)})
            for key, out in outs.items():
                result["real_floor"][key] = two_sample_accuracy(out, real)
                result["real_floor_success"][key] = float(scorer.verdicts(out, own_class)[2].mean())
        print("real digits against real ones: " + ", ".join(f"{k} {100 * v:.1f} %"
                                                          for k, v in result["real_floor"].items()), flush=True)
        print("real digits' success: " + ", ".join(f"{k} {100 * v:.1f} %"
                                                   for k, v in result["real_floor_success"].items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    pick = np.arange(0, len(targets), max(1, len(targets) // 16))[:16]
    rows = {"start": x0[pick], "endpoint (shipped)": run["last_img"][pick], "+ " + cascade: variants[cascade][pick]}
    for spec in args.resample:
        rows[f"+ resampled from {spec}"] = variants[f"resampled from {spec}"][pick]
        if args.accept is not None:
            rows[f"+ the first of {args.best_of} with p >= {args.accept:g}"] = variants[
                accepted_name(spec, args.best_of, args.accept)][pick]
    frames_figure({**rows, "real, same class": real[np.searchsorted(np.sort(targets), targets[pick])]},
                  args.out / f"{args.name}_frames.png")
    print(f"wrote {args.out}/{args.name}.json and its frames PNG", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
