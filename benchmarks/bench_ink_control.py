"""Is a gain in "success" a better digit, or a fainter one? Success with every frame's ink made typical.

    python benchmarks/bench_ink_control.py [--models realistic docs/realistic-redraw.recipe]
        [--first 200] [--digits 30] [--out docs] [--name ink_control]

The success rule (the judge calls the frame the target and its nearest real digit of the target is
no further than 90 % of real digits' are) is lenient to faint frames: an L2 distance shrinks as a
frame's ink does (real test digits dimmed to 0.74 of their intensity pass the nearest-real test
more often than as they are). So a lever whose frames hold less ink can raise "success" without
drawing better digits. This benchmark traverses test digits ``--first`` … ``+--digits`` to the
9 other classes with each model (200 L2 steps of 0.1) and measures success at the confident
point and at the last frame twice: as the frames are, and with each frame's intensity scaled so
that its ink (sum of pixels) is the median ink of real test digits of its target (1000–1999),
clipped to [0, 1]. Real test digits 2000–2899, scaled alike, give the ceiling of both. Writes
``<out>/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from bench_realism import follow  # benchmarks/bench_realism.py, beside this script

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import test_set
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.realism import RealismScorer


def typical_ink(images: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(classes,) the median ink (sum of pixels in [0, 1]) of each class's ``images``."""
    return np.array([np.median(images[labels == c].sum((1, 2))) for c in range(classes)])


def with_typical_ink(images: np.ndarray, targets: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """``images`` (N, H, W) in [0, 1], each scaled to the ink ``ink[target]`` and clipped to [0, 1]
    (an image brighter than typical is dimmed; a faint one brightened, saturating its strokes)."""
    k = ink[targets] / np.maximum(images.sum((1, 2)), 1e-3)
    return np.clip(images * k[:, None, None], 0.0, 1.0).astype(np.float32)


def successes(scorer: RealismScorer, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) bool: the judge says the target and the frame is within the target's p90 nearest-real."""
    return scorer.verdicts(images, targets)[2]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["realistic", "docs/realistic-redraw.recipe"])
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--digits", type=int, default=30)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--name", default="ink_control")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scorer = RealismScorer(dataset="mnist", device="cpu")
    images, labels = test_set("mnist")
    labels = np.asarray(labels)
    pixels = images.astype(np.float32) / 255.0
    ink = typical_ink(pixels[1000:2000], labels[1000:2000], 10)
    real, real_y = pixels[2000:2900], labels[2000:2900]
    result = {"first": args.first, "digits": args.digits, "steps": args.steps, "typical_ink": ink.tolist(),
              "real": {"traversals": len(real), "ink": float(real.sum((1, 2)).mean()),
                       "success": float(successes(scorer, real, real_y).mean()),
                       "success_typical_ink": float(successes(scorer, with_typical_ink(real, real_y, ink),
                                                              real_y).mean()),
                       "success_dimmed_0.74": float(successes(scorer, real * 0.74, real_y).mean())},
              "models": {}}
    digits = range(args.first, args.first + args.digits)
    starts = np.repeat(np.array(digits), 9)
    targets = np.array([t for i in digits for t in range(10) if t != labels[i]])
    x0 = pixels[starts]
    for name in args.models:
        run = follow(load_model(name), x0, targets, TraversalConfig(steps=args.steps))
        reached = run["conf_step"] >= 0
        row = {}
        for point, frames in (("confident", run["conf_img"]), ("last", run["last_img"])):
            row[point] = {"ink": float(frames[reached].sum((1, 2)).mean()),
                          "success": float((successes(scorer, frames, targets) & reached).mean()),
                          "success_typical_ink": float((successes(scorer, with_typical_ink(frames, targets, ink),
                                                                  targets) & reached).mean())}
        result["models"][name] = row
        print(f"{name}: " + "; ".join(f"{k} ink {v['ink']:.0f}, success {100 * v['success']:.1f} %, with typical "
                                      f"ink {100 * v['success_typical_ink']:.1f} %" for k, v in row.items()),
              file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / f"{args.name}.json", (json.dumps(result, indent=1) + "\n").encode())
    r = result["real"]
    print(f"real test digits: ink {r['ink']:.0f}, success {100 * r['success']:.1f} %, with typical ink "
          f"{100 * r['success_typical_ink']:.1f} %, dimmed to 0.74 {100 * r['success_dimmed_0.74']:.1f} %")
    return result


if __name__ == "__main__":
    main()
