"""Which levers make traversal realistic? Every lever and the recipe, measured on 100 test digits × 9 targets.

    python benchmarks/bench_realism.py [--levers robust standard ... realistic] [--digits 100]
        [--steps 200] [--step-size 0.1] [--device cpu] [--out docs]

Each lever (a model, an ensemble, a prior, a schedule or a stop rule; see ``LEVERS``) traverses
each of the first ``--digits`` test digits to each of the 9 other classes (200 unconstrained
L2 steps of 0.1 on the target's log-probability). A trajectory is measured at its
**confident point** (the first step where the traversed model's own p(target) >= 0.9), at its
first flip and at its last frame (for a stop rule, the frame it stopped at), with the metrics
of :mod:`trav_gui.engine.realism`:

- ``reach``: the confident point exists;
- ``judge``: an independent judge calls the image the target, for each judge (the robust
  WideCNN ``judge`` and the standard WideCNN ``judge-standard``; never part of a lever);
- ``nn``: nearest-real ratio against the shipped training reference; ``nn_test``: the same
  against held-out test digits;
- ``success``: judge agrees and nn within the real digits' 90th percentile, over **all**
  traversals (one that never gets confident fails); real digits score about 90 %;
- ``growth``: nn at the last frame over nn at the confident point;
- ``l2`` and ``ssim``: distance from, and structural similarity to, the start;
- ``two_sample`` (with ``--two-sample``): a classifier two-sample test's held-out accuracy at
  telling the confident-point frames from real test digits of the same classes (0.5: not at
  all; real digits against other real digits give the floor); ``two_sample_last``: the same
  for the endpoints (the last frame: where a stop rule stopped, or step ``--steps``), the
  frames a user is left with (with ``--two-sample-seeds N``, also ``two_sample_last_seeds``: the
  test's accuracy on the same endpoints for its seeds 0 … N−1, which draw other splits and other
  initial weights; one seed's figure moves by about a point); ``pixels`` and ``pixels_last``: what sets the frames apart
  (:func:`pixel_profile`: the share of black, hazy, mid-grey and saturated pixels);
- in colour worlds (``--dataset colored-mnist``), ``colour_kept`` and ``colour_kept_last``: the
  share of traversals whose added ink keeps the start's hue (within ±30°) at the confident point
  and at the last frame (one that never gets confident fails), and ``grey``, the median share of
  the added ink that is colourless.

Writes ``<out>/realism_levers.json`` and ``<out>/realism_levers.png`` (success per lever and
the ε ladder's accuracy/realism trade-off) and prints the table.

**Position** (``--shifts 0 1 2 3 4``): every start is moved K px (``--directions``, by turns;
zero fill) and so are the real digits of the ceiling. A moved start's frame may hold its digit
where the start stood or where the data set's digits stand, so both placements count: the frame
as it is, and the frame moved back by the start's offset, each judged and compared with the
real digits (``success`` holds if either placement passes; ``success_in_place`` and
``agree_in_place`` keep the frame as it is only). The result file is written after each lever
and a rerun continues it. Writes ``<out>/<name>.json`` and a success-versus-shift plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from plotting import pyplot  # benchmarks/plotting.py, beside this script
from tqdm import tqdm

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.colored import colour_kept
from trav_gui.engine.data.datasets import DATASETS, get_dataset, test_set
from trav_gui.engine.data.preprocess import shift_images
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.card import card_path, read_card
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.loading import list_models, load_model, load_recipe, resolve_model_path
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.realism import CONFIDENT_PROB, held_out_reference, judge_name, noise_growth, reference_set, ssim

# The shipped recipe's settings as measured in issue 21 (centring, before any finish).
REALISTIC_CENTRED = {"models": ("robust", "robust-eps3"), "prior": "score-mnist", "prior_weight": 0.15,
                     "sigma_max": 0.5, "sigma_min": 0.3, "anneal_steps": 100, "step_scale": 3.0, "stop": "plateau",
                     "patience": 10, "centre": True}

# The shipped fashion-realistic's settings (issue 21).
FASHION_REALISTIC = {"models": ("fashion-robust",), "prior": "score-fashion-mnist", "prior_weight": 0.1,
                     "sigma_max": 0.25, "sigma_min": 0.05, "anneal_steps": 100, "step_scale": 3.0,
                     "stop": "confident"}



def _fashion_ensemble(**changes) -> Recipe:
    """FASHION_REALISTIC with fashion-robust and fashion-robust-eps1_5 as its models, and ``changes``."""
    return Recipe(**{**FASHION_REALISTIC, "models": ("fashion-robust", "fashion-robust-eps1_5"), **changes})


# name -> (what it is, a model/recipe name or a Recipe)
LEVERS: dict[str, tuple[str, str | Recipe]] = {
    "standard": ("standard training", "standard"),
    "robust": ("robust, L2 eps 2 (shipped)", "robust"),
    "eps1": ("robust, eps 1", "robust-eps1"),
    "eps3": ("robust, eps 3", "robust-eps3"),
    "eps4": ("robust, eps 4", "robust-eps4"),
    "shift": ("robust eps 2 + shifts of up to 2 px", "robust-shift"),
    "shift3": ("robust eps 2 from scratch, shifts of up to 3 px, eps warm-up", "robust-shift3"),
    "shift3-20": ("robust eps 2 from scratch, shifts of up to 3 px, eps warm-up, 20 epochs", "robust-shift3-20"),
    "dae": ("robust + denoising autoencoder, lambda 0.05", Recipe(("robust",), prior="dae-mnist", prior_weight=0.05)),
    "score": ("robust + score model, lambda 0.15, sigma 0.5 -> 0.2",
              Recipe(("robust",), prior="score-mnist", prior_weight=0.15, sigma_max=0.5, sigma_min=0.2)),
    "step2.5": ("robust, steps 2.5 x longer", Recipe(("robust",), step_scale=2.5)),
    "ensemble": ("mean log-prob of robust and eps3", Recipe(("robust", "robust-eps3"))),
    "decay": ("robust, step size x 0.99 per step", Recipe(("robust",), step_decay=0.99)),
    "stop": ("robust, stop at the confident point", Recipe(("robust",), stop="confident")),
    "realistic": ("the shipped recipe", "realistic"),
    # Position levers (--shifts): the same models seeing each start's ink centred. The shipped
    # recipe centres since this was measured; "realistic-uncentred" is the recipe before that.
    "robust-centred": ("robust, seeing the start's ink centred", Recipe(("robust",), centre=True)),
    "realistic-centred": ("the recipe, seeing the start's ink centred (shipped since)", Recipe(**REALISTIC_CENTRED)),
    "realistic-uncentred": ("the recipe before it centred its starts", Recipe(**{**REALISTIC_CENTRED, "centre": False})),
    # Two-sample levers: what the stop rule stops is finished by the prior alone.
    "realistic-finish": ("the recipe + a finish: denoised at sigma 0.3, 0.1, 0.05",
                         Recipe(**REALISTIC_CENTRED, finish_sigmas=(0.3, 0.1, 0.05))),
    "realistic-resample0.3": ("the recipe + a finish: resampled by the prior from sigma 0.3 (10 steps)",
                              Recipe(**REALISTIC_CENTRED, finish_sigmas=tuple(np.geomspace(0.3, 0.02, 10)),
                                     finish_noise=True)),
    "realistic-resample0.5": ("the recipe + a finish: resampled by the prior from sigma 0.5 (20 steps)",
                              Recipe(**REALISTIC_CENTRED, finish_sigmas=tuple(np.geomspace(0.5, 0.02, 20)),
                                     finish_noise=True)),
    # Start-class lever (issue 21): the prior's first noise level (docs/realistic-redraw.recipe). It
    # raises "success" by fainter frames, not better digits (bench_ink_control.py): not shipped.
    "realistic-smax0.75": ("the recipe (with its finish), the prior's sigma from 0.75 (not 0.5) down to 0.3",
                           Recipe(**{**REALISTIC_CENTRED, "sigma_max": 0.75}, finish_sigmas=(0.3, 0.1, 0.05))),
    # Fashion levers (issue 21): the shipped fashion-realistic's settings with a more robust model.
    "fashion-eps1.5": ("fashion-robust-eps1_5 (L2 eps 1.5) + the Fashion prior, as fashion-realistic",
                       Recipe(**{**FASHION_REALISTIC, "models": ("fashion-robust-eps1_5",)})),
    "fashion-ensemble": ("mean log-prob of fashion-robust and fashion-robust-eps1_5 + the Fashion prior",
                         _fashion_ensemble()),
    "fashion-ensemble-finish": ("fashion-ensemble, plateau stop + a finish: denoised at sigma 0.25, 0.1, 0.05",
                                _fashion_ensemble(stop="plateau", finish_sigmas=(0.25, 0.1, 0.05))),
    "fashion-ensemble-l0.2": ("fashion-ensemble, prior weight 0.2",
                              _fashion_ensemble(prior_weight=0.2)),
    "fashion-ensemble-s0.5": ("fashion-ensemble, sigma 0.5 -> 0.1",
                              _fashion_ensemble(sigma_max=0.5, sigma_min=0.1)),
    "fashion-ensemble-s0.35": ("fashion-ensemble, sigma 0.35 -> 0.05",
                               _fashion_ensemble(sigma_max=0.35, sigma_min=0.05)),
    "fashion-ensemble-s0.4": ("fashion-ensemble, sigma 0.4 -> 0.05",
                              _fashion_ensemble(sigma_max=0.4, sigma_min=0.05)),
    "fashion-ensemble-s0.45": ("fashion-ensemble, sigma 0.45 -> 0.05",
                               _fashion_ensemble(sigma_max=0.45, sigma_min=0.05)),
    "fashion-ensemble-s0.5-resample": ("fashion-ensemble-s0.5 + a finish: resampled from sigma 0.2 (8 steps)",
                                       _fashion_ensemble(sigma_max=0.5, sigma_min=0.1, finish_noise=True,
                                                         finish_sigmas=tuple(np.geomspace(0.2, 0.02, 8)))),
}


# The directions a start can be moved in: name -> (dy, dx) per pixel of shift.
DIRECTIONS = {"r": (0, 1), "l": (0, -1), "d": (1, 0), "u": (-1, 0),
              "dr": (1, 1), "dl": (1, -1), "ur": (-1, 1), "ul": (-1, -1)}
DEFAULT_DIRECTIONS = ("dr", "ul", "dl", "ur")


def start_offsets(n: int, shift: int, directions: tuple[str, ...]) -> np.ndarray:
    """(n, 2) offsets (dy, dx): the i-th start moved ``shift`` px in ``directions[i % len]``."""
    if shift == 0:
        return np.zeros((n, 2), int)
    steps = np.array([DIRECTIONS[d] for d in directions])
    return shift * steps[np.arange(n) % len(steps)]


def shifted_starts(x0: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each start moved by its offset (zero fill)."""
    out = x0.copy()
    for off in np.unique(offsets, axis=0):
        if off.any():
            sel = (offsets == off).all(1)
            out[sel] = shift_images(x0[sel], int(off[0]), int(off[1]))
    return out


def load_lever(spec: str | Recipe, device: str):
    if isinstance(spec, Recipe):
        return load_recipe(spec, device=device)
    return load_model(spec, device=device)


def named_lever(name: str, device: str):
    """(what it is, its spec, the loaded model) of lever ``name``; None (said why) if it cannot load."""
    what, spec = LEVERS.get(name, (name, name))
    try:
        return what, spec, load_lever(spec, device)
    except (ModelLoadError, PriorLoadError, RecipeError) as exc:
        print(f"skipping lever {name}: {exc}", file=sys.stderr)
        return None


def follow(model, x0: np.ndarray, targets: np.ndarray, config: TraversalConfig,
           shape: tuple[int, int, int] = (1, 28, 28)) -> dict[str, np.ndarray]:
    """Traverse and keep, per trajectory, the frames and figures at the flip, the confident
    point and the last frame."""
    n = len(x0)
    out = {"conf_img": np.zeros(x0.shape, np.float32), "flip_img": np.zeros(x0.shape, np.float32),
           "conf_step": np.full(n, -1), "flip_step": np.full(n, -1), "conf_l2": np.full(n, np.nan)}
    for frame in tqdm(traverse([model], x0, targets, config, shape=shape), total=config.steps + 1, desc="traversals",
                      file=sys.stderr, leave=False):
        p = frame.probs[0, np.arange(n), targets]
        hit = (p >= CONFIDENT_PROB) & (out["conf_step"] < 0)
        out["conf_step"][hit] = frame.step
        out["conf_l2"][hit] = frame.l2[0][hit]
        out["conf_img"][hit] = frame.images[0][hit]
        flip = (frame.predictions[0] == targets) & (out["flip_step"] < 0)
        out["flip_step"][flip] = frame.step
        out["flip_img"][flip] = frame.images[0][flip]
        out["last_img"] = frame.images[0].copy()
        out["last_l2"] = frame.l2[0].copy()
    return out


def judge_says(judge, images: np.ndarray, device: str, shape: tuple[int, int, int] = (1, 28, 28)) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images)).reshape(-1, *shape).to(device)
        return torch.cat([judge(b).argmax(1).cpu() for b in x.split(1000)]).numpy()


def colour_measures(run: dict, x0: np.ndarray, reached: np.ndarray) -> dict:
    """Colour worlds: the share of traversals whose added ink keeps the start's hue, at the
    confident point (never confident: not kept) and at the last frame, and the median grey share."""
    kept_c, kept_l, grey = np.zeros(len(x0), bool), np.zeros(len(x0), bool), np.full(len(x0), np.nan)
    for i in range(len(x0)):
        k, g = colour_kept(run["conf_img"][i], x0[i])
        kept_c[i], grey[i] = bool(k) and reached[i], float(g)
        kept_l[i] = bool(colour_kept(run["last_img"][i], x0[i])[0])
    return {"colour_kept": float(kept_c.mean()), "colour_kept_last": float(kept_l.mean()),
            "grey": float(np.nanmedian(grey[reached])) if reached.any() and np.isfinite(grey[reached]).any() else None}


def nearest_by_class(ref, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each image's nearest-real ratio against the references of its class in ``classes``."""
    out = np.full(len(classes), np.nan)
    for c in np.unique(classes):
        sel = classes == c
        out[sel] = ref.nearest(images[sel], int(c))[0]
    return out


def measure(run: dict, x0: np.ndarray, targets: np.ndarray, judges: dict, ref, held, device: str,
            dataset: str = "mnist", offsets: np.ndarray | None = None) -> dict:
    ds = get_dataset(dataset)
    reached = run["conf_step"] >= 0
    flipped = run["flip_step"] >= 0
    offsets = np.zeros((len(targets), 2), int) if offsets is None else offsets
    thr, thr_t = ref.p90[targets], held.p90[targets]
    moved = offsets.any()
    # A moved start's frame may hold its digit where the start stood (changed in place) or where
    # the data set's digits stand (the model drew a new one there): both count, each placement
    # judged and compared with the real images. The judges were trained on the data set's
    # placement and are not translation-invariant themselves.
    back = {key: shifted_starts(run[key], -offsets) for key in ("conf_img", "last_img")} if moved else None
    nn_c_here = nearest_by_class(ref, run["conf_img"], targets)
    nn_l_here = nearest_by_class(ref, run["last_img"], targets)
    nn_t_here = nearest_by_class(held, run["conf_img"], targets)
    nn_c, nn_l, nn_t = nn_c_here, nn_l_here, nn_t_here
    if moved:  # the nearer placement (as ReferenceSet.nearest does with an offset)
        nn_c_back = nearest_by_class(ref, back["conf_img"], targets)
        nn_l_back = nearest_by_class(ref, back["last_img"], targets)
        nn_t_back = nearest_by_class(held, back["conf_img"], targets)
        nn_c, nn_l, nn_t = np.fmin(nn_c_here, nn_c_back), np.fmin(nn_l_here, nn_l_back), np.fmin(nn_t_here, nn_t_back)
    row = {"reach": float(reached.mean()),
           "median_steps_to_confident": float(np.median(run["conf_step"][reached])) if reached.any() else None,
           "nn": float(np.median(nn_c[reached])) if reached.any() else None,
           "nn_test": float(np.median(nn_t[reached])) if reached.any() else None,
           "nn_last": float(np.median(nn_l)),
           "growth": float(np.median(noise_growth(nn_l[reached], nn_c[reached]))) if reached.any() else None,
           "l2": float(np.median(run["conf_l2"][reached])) if reached.any() else None,
           "l2_last": float(np.median(run["last_l2"])),
           "ssim": (float(np.median(ssim(run["conf_img"][reached], x0[reached], channels=ds.channels)))
                    if reached.any() else None),
           "judges": {}}
    if ds.is_colour:
        row.update(colour_measures(run, x0, reached))
    for name, judge in judges.items():
        at_conf = judge_says(judge, run["conf_img"], device, ds.shape) == targets
        at_flip = judge_says(judge, run["flip_img"], device, ds.shape) == targets
        at_last = judge_says(judge, run["last_img"], device, ds.shape) == targets
        ok_c, ok_t, ok_l = at_conf & (nn_c_here <= thr), at_conf & (nn_t_here <= thr_t), at_last & (nn_l_here <= thr)
        if moved:
            back_conf = judge_says(judge, back["conf_img"], device, ds.shape) == targets
            back_last = judge_says(judge, back["last_img"], device, ds.shape) == targets
            row.setdefault("agree_in_place", {})[name] = float(at_conf[reached].mean()) if reached.any() else None
            row.setdefault("success_in_place", {})[name] = float((reached & ok_c).mean())
            ok_c |= back_conf & (nn_c_back <= thr)
            ok_t |= back_conf & (nn_t_back <= thr_t)
            ok_l |= back_last & (nn_l_back <= thr)
            at_conf |= back_conf
        row["judges"][name] = {
            "agree": float(at_conf[reached].mean()) if reached.any() else None,
            "agree_at_flip": float(at_flip[flipped].mean()) if flipped.any() else None,
            "success": float((reached & ok_c).mean()),
            "success_test": float((reached & ok_t).mean()),
            "success_last": float(ok_l.mean()),
        }
    return row


def real_digits(images, labels, judges, ref, held, device, dataset: str = "mnist", shift: int = 0,
                directions: tuple[str, ...] = ()) -> dict:
    """The same metrics for real test digits (1000-1899, neither starts nor references): the
    ceiling. With ``shift``, the real digits are moved as the starts are (direction by turns)."""
    ds = get_dataset(dataset)
    x = images[1000:1900].astype(np.float32) / 255.0
    y = labels[1000:1900].astype(int)
    offsets = start_offsets(len(y), shift, directions)
    x = shifted_starts(x, offsets)
    back = shifted_starts(x, -offsets) if shift else x
    here_r, here_t = nearest_by_class(ref, x, y), nearest_by_class(held, x, y)
    back_r, back_t = (nearest_by_class(ref, back, y), nearest_by_class(held, back, y)) if shift else (here_r, here_t)
    out = {"nn": float(np.median(np.fmin(here_r, back_r))), "nn_test": float(np.median(np.fmin(here_t, back_t))),
           "judges": {}}
    for name, judge in judges.items():
        # Either placement counts, as for the frames (see measure).
        ok_here = judge_says(judge, x, device, ds.shape) == y
        ok_back = judge_says(judge, back, device, ds.shape) == y if shift else ok_here
        out["judges"][name] = {
            "agree": float((ok_here | ok_back).mean()),
            "success": float(((ok_here & (here_r <= ref.p90[y])) | (ok_back & (back_r <= ref.p90[y]))).mean()),
            "success_test": float(((ok_here & (here_t <= held.p90[y])) | (ok_back & (back_t <= held.p90[y]))).mean())}
        if shift:
            out.setdefault("agree_in_place", {})[name] = float(ok_here.mean())
    return out


def two_sample_accuracy(fake: np.ndarray, real: np.ndarray, splits: int = 5, epochs: int = 20, seed: int = 0,
                        shape: tuple[int, int, int] = (1, 28, 28)) -> float:
    """A classifier two-sample test (Lopez-Paz & Oquab, 2017): a fresh small CNN learns to tell
    ``fake`` from ``real`` images (as many of each: the larger set is subsampled) on 70 % of them
    and is scored on the other 30 %; the mean held-out accuracy over ``splits`` random splits.
    About 0.5: indistinguishable; 1.0: told apart every time."""
    from torch import nn

    rng = np.random.default_rng(seed)
    n = min(len(fake), len(real))
    if n < 10:
        return float("nan")
    accs = []
    for split in range(splits):
        f = fake[rng.choice(len(fake), n, replace=False)]
        r = real[rng.choice(len(real), n, replace=False)]
        x = torch.from_numpy(np.concatenate([f, r]).astype(np.float32)).reshape(-1, *shape)
        y = torch.cat([torch.ones(n), torch.zeros(n)])
        order = torch.from_numpy(rng.permutation(2 * n))
        cut = int(0.7 * 2 * n)
        tr, te = order[:cut], order[cut:]
        torch.manual_seed(seed * 100 + split)
        net = nn.Sequential(nn.Conv2d(shape[0], 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                            nn.Linear(32 * (shape[1] // 4) * (shape[2] // 4), 64), nn.ReLU(), nn.Linear(64, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        for _ in range(epochs):
            for b in tr[torch.randperm(len(tr))].split(64):
                loss = nn.functional.binary_cross_entropy_with_logits(net(x[b]).squeeze(1), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            accs.append(float(((net(x[te]).squeeze(1) > 0).float() == y[te]).float().mean()))
    return float(np.mean(accs))


def two_sample_seeds(fake: np.ndarray, real: np.ndarray, n: int, **kw) -> list[float]:
    """:func:`two_sample_accuracy` of the same sets for its seeds 0 … ``n``−1 (other splits, other
    initial weights): how far one seed's figure moves by itself."""
    return [two_sample_accuracy(fake, real, seed=s, **kw) for s in range(max(1, n))]


# A pixel's grey level, by band: exactly black (below one 8-bit step), faint haze, mid-grey
# (stroke edges) and saturated (stroke cores). Real MNIST digits: about 82 % black, 4 % haze.
PIXEL_BANDS = {"black": (0.0, 1 / 255), "haze": (1 / 255, 0.3), "grey": (0.3, 0.9), "saturated": (0.9, 1.01)}


def pixel_profile(images: np.ndarray) -> dict[str, float]:
    """The share of pixels in each of ``PIXEL_BANDS`` over ``images`` (N, ...) in [0, 1], and the
    mean ink per image (the sum of its pixels): the grey-level statistics that tell frames apart."""
    x = np.asarray(images, np.float32).reshape(len(images), -1)
    if not len(x):
        return {}
    out = {band: float(((x >= lo) & (x < hi)).mean()) for band, (lo, hi) in PIXEL_BANDS.items()}
    out["ink"] = float(x.sum(1).mean())
    return out


def frames_figure(rows: dict[str, np.ndarray], path: Path, scale: int = 3, gap: int = 4) -> Path:
    """A grid of frames, one labelled row per entry of ``rows`` (name -> (N, ...) images in
    [0, 1], the same N), written as a PNG: the tell-tales in view, without matplotlib."""
    from PIL import Image, ImageDraw

    from trav_gui.engine.files import save_png
    from trav_gui.engine.output.render import font, image_size, tile

    n = min(len(v) for v in rows.values())
    h, w = (scale * k for k in image_size(next(iter(rows.values()))[0]))
    text = font(13)
    label_w = max(170, 12 + int(max(text.getlength(name) for name in rows)))  # the longest label fits
    sheet = Image.new("RGB", (label_w + n * (w + gap), len(rows) * (h + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows.items()):
        y = r * (h + gap)
        draw.text((4, y + h // 2 - 7), name, fill="black", font=text)
        for c in range(n):
            sheet.paste(tile(images[c], scale), (label_w + c * (w + gap), y))
    return save_png(path, sheet)


def every_other_class(labels, digits: range, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(start index, target) of every test image in ``digits`` to every class but its own."""
    starts = np.repeat(np.array(digits), classes - 1)
    return starts, np.array([t for i in digits for t in range(classes) if t != labels[i]])


def real_pool(images, labels, classes: np.ndarray) -> np.ndarray:
    """Real test digits 1000-1999 (never starts or references), drawn to match ``classes``' mix.
    A class asked for more often than those hold (about 100 each) takes its next digits from test
    digits 4000 on, so that no real digit repeats (a repeat could sit on both sides of the
    two-sample test's split); only beyond those does the pool repeat."""
    x = images[1000:2000].astype(np.float32) / 255.0
    y = labels[1000:2000].astype(int)
    spare_y = labels[4000:].astype(int)
    out = []
    for c, k in zip(*np.unique(classes, return_counts=True)):
        pool = x[y == c]
        if k > len(pool):
            more = np.flatnonzero(spare_y == c)[: k - len(pool)] + 4000
            pool = np.concatenate([pool, images[more].astype(np.float32) / 255.0])
        out.append(pool[np.arange(k) % len(pool)])
    return np.concatenate(out) if out else x[:0]


def default_judges(dataset: str) -> list[str]:
    """Every shipped judge of ``dataset``, the data set's main judge (the robust one) first."""
    names = [e.name for e in list_models() if e.card.is_judge and e.dataset == dataset]
    return sorted(names, key=lambda n: n != judge_name(dataset))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levers", nargs="+", default=list(LEVERS),
                   help=f"named levers ({', '.join(LEVERS)}) or model/recipe names")
    p.add_argument("--judges", nargs="+", default=None, help="default: every shipped judge of the data set")
    p.add_argument("--digits", type=int, default=100)
    p.add_argument("--first", type=int, default=0,
                   help="start at this test digit (e.g. 200 to check a recipe on digits it was not tuned on)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--step-size", type=float, default=0.1)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    p.add_argument("--device", default="cpu", help='torch device, e.g. "cuda"')
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--name", default="realism_levers", help="output file stem")
    p.add_argument("--two-sample-seeds", type=int, default=1, metavar="N",
                   help="with --two-sample: also test the endpoints with the test's seeds 0..N-1 (mean and sd)")
    p.add_argument("--write-card", action="store_true",
                   help="store the realistic recipe's measured figures (and its clean accuracy) in its card")
    p.add_argument("--shifts", nargs="+", type=int, default=None, metavar="K",
                   help="success versus position: move every start (and the real digits) K px, for each K "
                        "(e.g. 0 1 2 3 4); the nearest-real distance is also taken at the start's own offset. "
                        "Writes <out>/<name>.json and a success-versus-shift plot")
    p.add_argument("--directions", nargs="+", choices=list(DIRECTIONS), default=list(DEFAULT_DIRECTIONS),
                   help="the directions starts are moved in, by turns (default: the four diagonals)")
    p.add_argument("--two-sample", action="store_true",
                   help="also run a classifier two-sample test per lever: how well a fresh CNN tells its "
                        "confident-point frames from real test digits of the same classes (0.5: not at all)")
    p.add_argument("--merge", nargs="+", type=Path, default=None,
                   help="combine the JSON files of runs split over processes into <out>/<name>.json and its plot")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out / f"{args.name}.json")
    t_start = time.time()
    judges = {j: load_model(j, device=args.device) for j in (args.judges or default_judges(args.dataset))}
    images, labels = test_set(args.dataset)
    if not 0 <= args.first <= args.first + args.digits <= 1000:
        p.error("the starts must be among test digits 0-999 (1000-1999 measure what is typical)")
    ds = get_dataset(args.dataset)
    digits = range(args.first, args.first + args.digits)
    starts, targets = every_other_class(labels, digits, ds.num_classes)
    x0 = images[starts].astype(np.float32) / 255.0
    ref, held = reference_set(args.dataset), held_out_reference(args.dataset)
    config = TraversalConfig(steps=args.steps, step_size=args.step_size)
    if args.shifts is not None:
        if any(not 0 <= k <= 8 for k in args.shifts):
            p.error("--shifts must be between 0 and 8 pixels")
        return shift_curve(args, judges, images, labels, ds, digits, targets, ref, held, config)
    result = {"dataset": args.dataset, "digits": args.digits, "first": args.first, "traversals": len(targets), "steps": args.steps,
              "step_size": args.step_size, "confident_prob": CONFIDENT_PROB, "judges": list(judges),
              "real_digits": real_digits(images, labels, judges, ref, held, args.device, args.dataset), "levers": {}}
    if args.two_sample:  # real against real: the test's floor (test digits 0-999 against 1000-1999)
        own = images[:1000].astype(np.float32) / 255.0
        result["real_digits"]["two_sample"] = two_sample_accuracy(
            own[np.isin(labels[:1000], targets)][:len(targets)], real_pool(images, labels, targets), shape=ds.shape)
        result["real_digits"]["pixels"] = pixel_profile(real_pool(images, labels, targets))
    for name in args.levers:
        lever = named_lever(name, args.device)
        if lever is None:
            continue
        what, spec, model = lever
        t0 = time.time()
        run = follow(model, x0, targets, config, ds.shape)
        row = {"what": what, **measure(run, x0, targets, judges, ref, held, args.device, args.dataset),
               "seconds": round(time.time() - t0, 1)}
        if args.two_sample:
            reached = run["conf_step"] >= 0
            fake = run["conf_img"][reached]
            row["two_sample"] = two_sample_accuracy(fake, real_pool(images, labels, targets[reached]), shape=ds.shape)
            # The endpoints of every traversal (one that never got confident too: it is what the
            # user is left with), against real digits of the targets' mix.
            seeds = two_sample_seeds(run["last_img"], real_pool(images, labels, targets), args.two_sample_seeds,
                                     shape=ds.shape)
            row["two_sample_last"] = seeds[0]
            if len(seeds) > 1:
                row["two_sample_last_seeds"] = seeds
                print(f"{name}: two-sample accuracy at the endpoints over seeds 0-{len(seeds) - 1}: "
                      f"{np.mean(seeds):.3f} ± {np.std(seeds, ddof=1):.3f} (sd)", file=sys.stderr)
            row["pixels"], row["pixels_last"] = pixel_profile(fake), pixel_profile(run["last_img"])
            print(f"{name}: two-sample accuracy {row['two_sample']:.3f} at the confident point ({len(fake)} "
                  f"frames), {row['two_sample_last']:.3f} at the endpoints", file=sys.stderr)
            pick = np.arange(0, len(targets), max(1, len(targets) // 16))[:16]  # spread over starts and targets
            args.out.mkdir(parents=True, exist_ok=True)
            frames_figure({"start": x0[pick], "confident point": run["conf_img"][pick],
                           "endpoint": run["last_img"][pick],
                           "real, same class": real_pool(images, labels, targets)[np.searchsorted(
                               np.sort(targets), targets[pick])]},
                          args.out / f"{args.name}_{Path(name).name}_frames.png")  # a lever given as a path: its file name
        result["levers"][name] = row
        print_row(name, row, list(judges))
        if args.write_card and isinstance(spec, str) and resolve_model_path(spec).suffix == ".recipe":
            write_recipe_card(spec, model, row, result, args.dataset, args.device)
    for name, row in result["levers"].items():  # cards read last: evaluations may finish meanwhile
        spec = LEVERS.get(name, (name, name))[1]
        card = read_card(resolve_model_path(spec)) if isinstance(spec, str) else None
        if card:
            row["clean_accuracy"] = card.evaluation.clean_accuracy
            row["eps"] = (card.to_json().get("training") or {}).get("eps")
    result["seconds"] = round(time.time() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    plot(result, args.out / f"{args.name}.png")
    return result


def shift_curve(args, judges, images, labels, ds, digits, targets, ref, held, config) -> dict:
    """Every lever at every shift in ``args.shifts``; the file is rewritten after each (shift,
    lever), and a rerun with the same settings skips what the file already holds."""
    path = args.out / f"{args.name}.json"
    settings = {"dataset": args.dataset, "digits": args.digits, "first": args.first, "steps": args.steps,
                "step_size": args.step_size, "judges": list(judges), "directions": list(args.directions),
                "confident_prob": CONFIDENT_PROB, "traversals": len(targets)}
    result = {**settings, "by_shift": {}}
    if path.is_file():
        old = json.loads(path.read_text())
        if all(old.get(k) == v for k, v in settings.items()):
            result = old
            print(f"continuing {path}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    per_start = ds.num_classes - 1
    for k in args.shifts:
        offsets = np.repeat(start_offsets(len(digits), k, tuple(args.directions)), per_start, axis=0)
        x0 = shifted_starts(images[np.repeat(np.array(digits), per_start)].astype(np.float32) / 255.0, offsets)
        at = result["by_shift"].setdefault(str(k), {"levers": {}})
        if "real_digits" not in at:
            at["real_digits"] = real_digits(images, labels, judges, ref, held, args.device, args.dataset, k,
                                            tuple(args.directions))
        for name in args.levers:
            lever = None if name in at["levers"] else named_lever(name, args.device)
            if lever is None:
                continue
            what, _, model = lever
            t0 = time.time()
            run = follow(model, x0, targets, config, ds.shape)
            at["levers"][name] = {"what": what, **measure(run, x0, targets, judges, ref, held, args.device,
                                                          args.dataset, offsets),
                                  "seconds": round(time.time() - t0, 1)}
            print(f"shift {k} px: ", end="", file=sys.stderr)
            print_row(name, at["levers"][name], list(judges))
            write_bytes_atomic(path, (json.dumps(result, indent=2) + "\n").encode())
    write_bytes_atomic(path, (json.dumps(result, indent=2) + "\n").encode())
    print_shift_table(result)
    plot_shift(result, path.with_suffix(".png"))
    return result


def print_shift_table(result: dict) -> None:
    judge = result["judges"][0]
    shifts = sorted(result["by_shift"], key=int)
    levers = list(dict.fromkeys(n for k in shifts for n in result["by_shift"][k]["levers"]))
    print(f"success (judge {judge}) % by shift of the start, {result['traversals']} traversals per cell "
          f"({result['digits']} test digits x {result['traversals'] // max(1, result['digits'])} targets), "
          f"directions {', '.join(result['directions'])} by turns")
    print("| shift (px) | real test digits | " + " | ".join(levers) + " |")
    print("|" + "---|" * (len(levers) + 2))
    for k in shifts:
        at = result["by_shift"][k]
        cells = [_pct(at["levers"][n]["judges"][judge]["success"]) if n in at["levers"] else "–" for n in levers]
        print(f"| {k} | {_pct(at['real_digits']['judges'][judge]['success'])} | " + " | ".join(cells) + " |")


def plot_shift(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    judge = result["judges"][0]
    shifts = sorted(result["by_shift"], key=int)
    levers = list(dict.fromkeys(n for k in shifts for n in result["by_shift"][k]["levers"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([int(k) for k in shifts], [100 * result["by_shift"][k]["real_digits"]["judges"][judge]["success"]
                                       for k in shifts], "k--", label="real test digits, moved alike")
    for name in levers:
        ks = [k for k in shifts if name in result["by_shift"][k]["levers"]]
        ax.plot([int(k) for k in ks], [100 * result["by_shift"][k]["levers"][name]["judges"][judge]["success"]
                                       for k in ks], "o-", label=name)
    ax.set_xlabel("start moved by (px, " + "/".join(result["directions"]) + " by turns)")
    ax.set_ylabel(f"success (judge {judge}) %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def merge(parts: list[Path], out: Path) -> dict:
    """One result from runs of the same settings over different levers."""
    results = [json.loads(Path(p).read_text()) for p in parts]
    merged = results[0]
    for other in results[1:]:
        same = all(other.get(k) == merged.get(k) for k in ("dataset", "digits", "first", "steps", "step_size", "judges"))
        if not same:
            sys.exit("cannot merge: the parts were run with other settings (data set, digits, steps or judges)")
        merged["levers"].update(other["levers"])
        merged["seconds"] = round(merged["seconds"] + other["seconds"], 1)
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print_table(merged)
    plot(merged, out.with_suffix(".png"))
    return merged


def write_recipe_card(name: str, model, row: dict, result: dict, dataset: str, device: str = "cpu") -> None:
    """Put the recipe's clean accuracy (its classifier on the whole test set) and its measured
    realism into its card; the card keeps the recipe file's sha256."""
    from trav_gui.engine.models.accuracy import clean_accuracy

    recipe = resolve_model_path(name)
    path = card_path(recipe)
    card = read_card(recipe, strict=True).to_json()
    previous = card.get("evaluation") or {}
    clean, samples = clean_accuracy(model, dataset, device)
    first = result["judges"][0]
    card["evaluation"] = {
        "test_samples": samples, "clean_accuracy": clean,
        "realism": {"traversals": result["traversals"], "steps": result["steps"], "step_size": result["step_size"],
                    "starts": f"test images {result.get('first', 0)}-{result.get('first', 0) + result['digits'] - 1}",
                    "success": row["judges"][first]["success"],
                    # real test images' own success under the same rule: what "success" is out of
                    "ceiling": result["real_digits"]["judges"][first]["success"],
                    "success_by_judge": {j: v["success"] for j, v in row["judges"].items()},
                    "judge_agreement": {j: v["agree"] for j, v in row["judges"].items()},
                    # at the frame the recipe stops at (its stop rule, then its finish)
                    "success_last_by_judge": {j: v["success_last"] for j, v in row["judges"].items()},
                    **{k: row[k] for k in ("reach", "nn", "nn_test", "growth", "l2", "ssim", "colour_kept",
                                           "colour_kept_last", "grey", "two_sample", "two_sample_last",
                                           "two_sample_last_seeds") if k in row},
                    "measured_by": "benchmarks/bench_realism.py"}}
    # Figures measured by other modes (--shifts: by_shift; the success map) stay, marked as measured before.
    kept = {k: v for k, v in (previous.get("realism") or {}).items() if k in ("by_shift", "success_map")}
    card["evaluation"]["realism"].update(kept)
    write_bytes_atomic(path, (json.dumps(card, indent=2) + "\n").encode())
    print(f"wrote the measured figures into {path}", file=sys.stderr)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _num(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def print_row(name: str, row: dict, judges: list[str]) -> None:
    j = row["judges"]
    print(f"{name:<10} reach {_pct(row['reach'])} | " + " | ".join(
        f"{k}: agree {_pct(j[k]['agree'])} success {_pct(j[k]['success'])}" for k in judges)
        + f" | nn {_num(row['nn'])} nn_test {_num(row['nn_test'])} growth {_num(row['growth'])} "
        f"l2 {_num(row['l2'])} ssim {_num(row['ssim'])} ({row['seconds']} s)", file=sys.stderr)


def print_table(result: dict) -> None:
    judges = result["judges"]
    head = ["lever", "reach %"] + [f"{j} agree %" for j in judges] + [f"success ({j}) %" for j in judges]
    head += ["success held-out %", "nn", "nn test", "growth", "‖δ‖₂", "SSIM", "success last %"]
    colour = any("colour_kept" in row for row in result["levers"].values())
    if colour:
        head += ["colour kept %", "colour kept last %", "grey share"]
    two = "two_sample" in result["real_digits"]
    if two:
        head += ["two-sample acc. %", "two-sample, endpoints %"]
    print(f"{result['traversals']} traversals per lever ({result['digits']} test digits x 9 targets), "
          f"{result['steps']} steps of {result['step_size']}; at the confident point (p >= {result['confident_prob']})")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    real = result["real_digits"]
    print("| real test digits | – | " + " | ".join(_pct(real["judges"][j]["agree"]) for j in judges) + " | "
          + " | ".join(_pct(real["judges"][j]["success"]) for j in judges)
          + f" | {_pct(real['judges'][judges[0]]['success_test'])} | {_num(real['nn'])} | {_num(real['nn_test'])}"
          " | – | – | – | – |" + (" – | – | – |" if colour else "")
          + (f" {_pct(real['two_sample'])} | {_pct(real['two_sample'])} |" if two else ""))
    for name, row in result["levers"].items():
        j = row["judges"]
        cells = [name, _pct(row["reach"])] + [_pct(j[k]["agree"]) for k in judges]
        cells += [_pct(j[k]["success"]) for k in judges]
        cells += [_pct(j[judges[0]]["success_test"]), _num(row["nn"]), _num(row["nn_test"]), _num(row["growth"]),
                  _num(row["l2"]), _num(row["ssim"]), _pct(j[judges[0]]["success_last"])]
        if colour:
            cells += [_pct(row.get("colour_kept")), _pct(row.get("colour_kept_last")), _num(row.get("grey"))]
        if two:
            cells += [_pct(row.get("two_sample")), _pct(row.get("two_sample_last"))]
        print("| " + " | ".join(cells) + " |")


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    levers = result["levers"]
    judges = result["judges"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    names = list(levers)
    width = 0.8 / max(1, len(judges))
    for k, j in enumerate(judges):
        axes[0].bar(np.arange(len(names)) + k * width, [100 * levers[n]["judges"][j]["success"] for n in names],
                    width, label=f"success, judge {j}")
    real = result["real_digits"]["judges"][judges[0]]["success"]
    axes[0].axhline(100 * real, color="gray", ls="--", label="real test digits (ceiling)")
    axes[0].axhline(80, color="red", ls=":", label="target 80 %")
    axes[0].set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
    axes[0].set_ylabel("success at the confident point (%)")
    axes[0].legend(fontsize=8)
    ladder = sorted((row["eps"], row) for row in levers.values()
                    if row.get("eps") and row.get("clean_accuracy") and "shift" not in row["what"])
    if ladder:
        eps = [e for e, _ in ladder]
        axes[1].plot(eps, [100 * r["judges"][judges[0]]["success"] for _, r in ladder], "o-", label="success %")
        axes[1].plot(eps, [100 * r["clean_accuracy"] for _, r in ladder], "s-", label="clean accuracy %")
        axes[1].set_xlabel("training ε (L2)")
        axes[1].legend(fontsize=8)
        axes[1].set_title("the ε ladder")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
