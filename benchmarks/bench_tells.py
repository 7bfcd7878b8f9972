"""What gives a recipe's endpoints away? The two-sample test again, with one kind of detail taken out.

    python benchmarks/bench_tells.py [--recipe realistic] [--first 200] [--digits 50] [--steps 300]
        [--seeds 10] [--out docs] [--name tells]

The recipe traverses the held-out starts of ``bench_realism`` (test digits ``--first`` …, each to every
other class, ``--steps`` L2 steps of 0.1) and its endpoints are tested against real test digits of the
targets' mix (:func:`bench_realism.real_pool`) with :func:`bench_realism.two_sample_accuracy`, seeds 0 …
``--seeds``−1. Then again with both sets seen through one *view* that removes one kind of detail
(:data:`VIEWS`): where the test falls most, that detail was the tell. A diagnosis only: the views
change no frame a user sees. Also the sets' grey-level profile (:func:`bench_realism.pixel_profile`) and
a stroke-width estimate (:func:`stroke_width`). Grey-level data sets (MNIST, Fashion-MNIST). Writes
``<out>/<name>.json``; the endpoints are kept in ``--cache`` (default ``runs/<name>_endpoints.npz``, reused
by a rerun with the same recipe settings, starts and steps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_realism import (  # beside this script
    every_other_class,
    follow,
    pixel_profile,
    real_pool,
    two_sample_accuracy,
)
from torchvision.transforms.functional import gaussian_blur

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import get_dataset, test_set
from trav_gui.engine.files import atomic_paths, write_bytes_atomic
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.loading import load_recipe, resolve_model_path


def without_faint(x: np.ndarray, floor: float = 0.3) -> np.ndarray:
    """Pixels below ``floor`` set to black: no haze over the field, no faint stroke edges."""
    return np.where(x < floor, 0.0, x).astype(np.float32)


def binarized(x: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Ink (≥ ``level``) or not: the strokes' shape and width alone, no grey levels."""
    return (x >= level).astype(np.float32)


def blurred(x: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """A Gaussian blur of each image (over its last two axes, kernel to 4 σ): no sharp edges, no pixel texture."""
    size = 2 * math.ceil(4 * sigma) + 1
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = gaussian_blur(t.reshape(-1, 1, *t.shape[-2:]), [size, size], [sigma, sigma])
    return out.reshape(t.shape).numpy()


def eight_bit(x: np.ndarray) -> np.ndarray:
    """Rounded to 8-bit grey levels, as MNIST's real digits are stored."""
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def grey_levels_of(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``x`` with its pixels' grey levels replaced, rank for rank, by those of ``like`` (same shape):
    the same order of brightness within the set, the reals' distribution of grey levels. Ties keep
    their order of appearance, so a black field stays black where ``like`` has as much black."""
    if x.size != like.size:
        raise ValueError(f"{x.size} pixels to take the grey levels of {like.size}")
    flat = x.reshape(-1)
    order = np.argsort(flat, kind="stable")
    out = np.empty_like(flat)
    out[order] = np.sort(like.reshape(-1))
    return out.reshape(x.shape).astype(np.float32)


# name -> (what it removes, the view of (fakes, reals))
VIEWS = {
    "as they are": ("nothing", lambda f, r: (f, r)),
    "8-bit": ("the endpoints' finer-than-8-bit grey levels", lambda f, r: (eight_bit(f), eight_bit(r))),
    "faint pixels off": ("haze and faint edges (every pixel below 0.3 set to 0, both sets)",
                         lambda f, r: (without_faint(f), without_faint(r))),
    "the reals' grey levels": (("the grey-level distribution (the endpoints' pixels given the reals' levels, "
                                "rank for rank)"), lambda f, r: (grey_levels_of(f, r), r)),
    "blurred": ("edges and texture (Gaussian blur σ 1 px, both sets)", lambda f, r: (blurred(f), blurred(r))),
    "binarized": ("every grey level (ink ≥ 0.5 or not, both sets): shape and width are left",
                  lambda f, r: (binarized(f), binarized(r))),
}


def stroke_width(x: np.ndarray, level: float = 0.5) -> float:
    """The mean stroke width in pixels of images ``x`` (N, ...), estimated as twice the ink area over its
    boundary (a stroke of length L and width w has area L·w and a boundary of about 2·L pixels);
    ink: pixels ≥ ``level``; boundary: ink pixels with a non-ink 4-neighbour."""
    ink = x.reshape(len(x), *x.shape[-2:]) >= level
    p = np.pad(ink, ((0, 0), (1, 1), (1, 1)))  # beyond the frame: no ink
    inner = ink & p[:, :-2, 1:-1] & p[:, 2:, 1:-1] & p[:, 1:-1, :-2] & p[:, 1:-1, 2:]
    area, edge = ink.sum((1, 2)), (ink & ~inner).sum((1, 2))
    keep = edge > 0
    return float(np.mean(2.0 * area[keep] / edge[keep])) if keep.any() else float("nan")


def endpoints(recipe, ds, first: int, digits: int, steps: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the loaded ``recipe``'s last frames, their targets) from test images ``first`` … of data set ``ds``
    to every other class."""
    key = hashlib.sha256(json.dumps({"recipe": recipe.recipe.to_dict(), "first": first, "digits": digits,
                                     "steps": steps}).encode()).hexdigest()
    images, labels = test_set(ds.name)
    starts, targets = every_other_class(labels, range(first, first + digits), ds.num_classes)
    if cache.is_file():
        with np.load(cache) as f:
            if str(f["key"]) == key:
                return f["last"], targets
    x0 = images[starts].astype(np.float32) / 255.0
    run = follow(recipe, x0, targets, TraversalConfig(steps=steps, step_size=0.1), ds.shape)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths(cache) as (tmp,), open(tmp, "wb") as f:
        np.savez_compressed(f, last=run["last_img"], key=np.array(key))
    return run["last_img"], targets


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="realistic")
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--digits", type=int, default=50)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=10, help="the test's seeds 0..N-1 per view")
    p.add_argument("--views", nargs="+", choices=list(VIEWS), default=list(VIEWS))
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--name", default="tells")
    p.add_argument("--cache", type=Path, default=None, help="the endpoints' file (default runs/<name>_endpoints.npz)")
    args = p.parse_args(argv)
    if not 0 <= args.first <= args.first + args.digits <= 1000:
        p.error("the starts must be among test images 0-999 (1000-1999 are the reals)")
    try:
        recipe = load_recipe(resolve_model_path(args.recipe))
    except (ModelLoadError, PriorLoadError, RecipeError) as exc:
        p.error(f"--recipe {args.recipe}: {exc}")
    ds = get_dataset(recipe.dataset)
    if ds.channels != 1:
        p.error(f"{ds.title} is in colour: the views here are of grey levels")
    t0 = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    fake, targets = endpoints(recipe, ds, args.first, args.digits, args.steps,
                              args.cache or Path("runs") / f"{args.name}_endpoints.npz")
    images, labels = test_set(ds.name)
    real = real_pool(images, labels, targets)
    result = {"recipe": args.recipe, "dataset": ds.name, "first": args.first, "digits": args.digits, "traversals": len(fake),
              "steps": args.steps, "seeds": args.seeds,
              "profile": {"endpoints": {**pixel_profile(fake), "stroke_width": stroke_width(fake)},
                          "real": {**pixel_profile(real), "stroke_width": stroke_width(real)}},
              "views": {}}
    for name in args.views:
        what, view = VIEWS[name]
        f, r = view(fake, real)
        accs = [two_sample_accuracy(f, r, seed=s, shape=ds.shape) for s in range(args.seeds)]
        result["views"][name] = {"removes": what, "two_sample_seeds": accs, "mean": float(np.mean(accs)),
                                 "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0}
        print(f"{name:>24}: two-sample {100 * np.mean(accs):.1f} ± "
              f"{100 * result['views'][name]['sd']:.1f} % ({what})", flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    write_bytes_atomic(args.out / f"{args.name}.json", (json.dumps(result, indent=2) + "\n").encode())
    for who, prof in result["profile"].items():
        print(f"{who}: " + ", ".join(f"{k} {v:.3f}" for k, v in prof.items()), file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
