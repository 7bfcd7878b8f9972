"""How realistic are traversals? Robust vs standard, measured, on 100 test digits × 9 targets.

    python benchmarks/bench_realism_distance.py [--models robust standard] [--digits 100] [--steps 200]
        [--judge judge] [--dataset mnist] [--out docs]

Every one of the first ``--digits`` MNIST test digits is traversed to each of the 9 other
classes (one batch per model, 200 unconstrained L2 steps of 0.1 on the target's
log-probability). Each trajectory is then judged at three kinds of point:

- at the model's own first flip (the first step it predicts the target);
- at equal L2 distance from the start, ‖δ‖₂ = 2, 3, 4 (the first step that far out);
- at the last step.

Metrics at each point:

- ``own``: the traversed model predicts the target (success rate);
- ``judge``: an independent robust model (another architecture, WideCNN, and seed, adversarially
  trained only for this benchmark) also calls the image the target: a change of meaning, not
  only of one network's decision;
- ``nn``: L2 distance to the nearest training image of the target class, divided by the
  median distance of a real training image of that class to its nearest other one
  (1 ≈ as close as real digits are to each other; real test digits are given for reference);
- ``im1``: IM1 (Van Looveren & Klaise 2019): reconstruction error under an autoencoder of the
  target class over that under an autoencoder of the start class (< 1: looks more like the
  target than like the start).

Also the steps and ‖δ‖₂ to the first flip. Writes ``<out>/realism.json`` and a plot
``<out>/realism_vs_distance.png`` of judge agreement and nn distance against ‖δ‖₂.
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
from torch import nn
from tqdm import tqdm

from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.datasets import DATASETS, load_training_set, test_set
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.realism import judge_name

HERE = Path(__file__).resolve().parent
DISTANCES = (2.0, 3.0, 4.0)
GRID = tuple(np.round(np.arange(0.5, 6.01, 0.5), 2))


def class_autoencoders(x_train: torch.Tensor, y_train: torch.Tensor, seed: int = 0) -> list[nn.Module]:
    """One small MLP autoencoder per class (784-256-32-256-784), trained for IM1."""
    torch.manual_seed(seed)
    aes = []
    for c in tqdm(range(10), desc="class autoencoders", file=sys.stderr):
        ae = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU(),
                           nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())
        data = x_train[y_train == c].flatten(1)
        opt = torch.optim.Adam(ae.parameters(), 1e-3)
        for _ in range(5):
            for idx in torch.randperm(len(data)).split(128):
                loss = ((ae(data[idx]) - data[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        aes.append(ae.eval().requires_grad_(False))
    return aes


def recon_error(ae: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ((ae(x) - x.flatten(1)) ** 2).sum(1)


def nearest_distance(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """L2 distance of each row of x (K, 784) to its nearest row of bank (B, 784)."""
    out = []
    bank_sq = (bank ** 2).sum(1)
    for chunk in x.split(1024):
        d2 = (chunk ** 2).sum(1, keepdim=True) - 2 * chunk @ bank.T + bank_sq
        out.append(d2.clamp_min(0).min(1).values.sqrt())
    return torch.cat(out)


def typical_class_distance(bank: torch.Tensor, sample: int = 500) -> float:
    """Median distance of a training image of a class to its nearest other one."""
    x = bank[:sample]
    d2 = (x ** 2).sum(1, keepdim=True) - 2 * x @ bank.T + (bank ** 2).sum(1)
    d2[torch.arange(len(x)), torch.arange(len(x))] = float("inf")
    return d2.clamp_min(0).min(1).values.sqrt().median().item()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["robust", "standard"])
    p.add_argument("--judge", default=None, help="default: the shipped judge of the data set (judge, fashion-judge)")
    p.add_argument("--digits", type=int, default=100)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--step-size", type=float, default=0.1)
    p.add_argument("--data-root", default=None)
    p.add_argument("--dataset", choices=sorted(DATASETS), default="mnist",
                   help="the data set (models, judge and test images must be of it)")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    t_start = time.time()
    models = [load_model(m) for m in args.models]
    args.judge = args.judge or judge_name(args.dataset)
    judge = load_model(args.judge)
    x_train, y_train, _ = load_training_set(args.dataset, True, args.data_root)
    images, labels = test_set(args.dataset)
    starts = np.repeat(np.arange(args.digits), 9)
    targets = np.array([t for i in range(args.digits) for t in range(10) if t != labels[i]])
    x0 = images[starts].astype(np.float32) / 255.0
    src = labels[starts].astype(int)
    m, n = len(models), len(starts)

    # Follow every trajectory, keeping only the images the metrics need.
    keep = {"flip": np.zeros((m, n, 28, 28), np.float32), "last": None}
    at_d = np.zeros((len(GRID), m, n, 28, 28), np.float32)
    got_d = np.zeros((len(GRID), m, n), bool)
    flip_step = np.full((m, n), -1)
    flip_l2 = np.full((m, n), np.nan)
    config = TraversalConfig(steps=args.steps, step_size=args.step_size)
    for frame in tqdm(traverse(models, x0, targets, config), total=args.steps + 1, desc="traversals",
                      file=sys.stderr):
        hit = (frame.predictions == targets[None]) & (flip_step < 0)
        flip_step[hit] = frame.step
        flip_l2[hit] = frame.l2[hit]
        keep["flip"][hit] = frame.images[hit]
        for g, d in enumerate(GRID):
            new = (frame.l2 >= d) & ~got_d[g]
            at_d[g][new] = frame.images[new]
            got_d[g] |= new
        keep["last"] = frame.images.copy()

    # References: nearest-neighbour banks and typical distances per class, autoencoders.
    flat_train = x_train.flatten(1)
    banks = [flat_train[y_train == c] for c in range(10)]
    typical = [typical_class_distance(b) for b in banks]
    aes = class_autoencoders(x_train, y_train)

    def metrics(imgs: np.ndarray, valid: np.ndarray, model_index: int) -> dict:
        """Metrics over the trajectories where ``valid`` (the point exists)."""
        idx = np.flatnonzero(valid)
        if idx.size == 0:
            return {"count": 0}
        x = torch.from_numpy(imgs[idx])[:, None]
        t, s = targets[idx], src[idx]
        with torch.no_grad():
            own = models[model_index](x).argmax(1).numpy() == t
            jud = judge(x).argmax(1).numpy() == t
        flat = x.flatten(1)
        nn_rel = np.empty(len(idx))
        im1 = np.empty(len(idx))
        for c in range(10):
            sel = np.flatnonzero(t == c)
            if sel.size:
                nn_rel[sel] = nearest_distance(flat[sel], banks[c]).numpy() / typical[c]
                err_t = recon_error(aes[c], flat[sel]).numpy()
                err_s = np.empty(sel.size)
                for sc in np.unique(s[sel]):
                    sub = sel[s[sel] == sc]
                    err_s[np.searchsorted(sel, sub)] = recon_error(aes[sc], flat[sub]).numpy()
                im1[sel] = err_t / (err_s + 1e-6)
        return {"count": int(idx.size), "own": float(own.mean()), "judge": float(jud.mean()),
                "nn": float(np.median(nn_rel)), "im1": float(np.median(im1))}

    result = {"models": args.models, "judge": Path(args.judge).name, "digits": args.digits,
              "traversals_per_model": n, "steps": args.steps, "step_size": args.step_size, "per_model": {}}
    # Reference: real test digits (not the starts) against the training banks of their own class.
    ref_x = torch.from_numpy(images[1000:1900].astype(np.float32) / 255.0).flatten(1)
    ref_y = labels[1000:1900].astype(int)
    ref_nn = np.concatenate([nearest_distance(ref_x[ref_y == c], banks[c]).numpy() / typical[c]
                             for c in range(10)])
    with torch.no_grad():
        ref_judge = float((judge(ref_x.view(-1, 1, 28, 28)).argmax(1).numpy() == ref_y).mean())
    result["reference_real_test_digits"] = {"nn": float(np.median(ref_nn)), "judge": ref_judge}
    for i, name in enumerate(args.models):
        flipped = flip_step[i] >= 0
        row = {
            "success_rate": float(flipped.mean()),
            "median_steps_to_flip": float(np.median(flip_step[i][flipped])) if flipped.any() else None,
            "median_l2_at_flip": float(np.nanmedian(flip_l2[i])) if flipped.any() else None,
            "at_flip": metrics(keep["flip"][i], flipped, i),
            "at_last": metrics(keep["last"][i], np.ones(n, bool), i),
        }
        for d in DISTANCES:
            g = GRID.index(d)
            row[f"at_l2_{d:g}"] = metrics(at_d[g, i], got_d[g, i], i)
        row["curve"] = [{"l2": d, **metrics(at_d[g, i], got_d[g, i], i)} for g, d in enumerate(GRID)]
        result["per_model"][name] = row
    result["seconds"] = round(time.time() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "realism.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    plot(result, args.out / "realism_vs_distance.png")
    return result


def print_table(result: dict) -> None:
    ref = result["reference_real_test_digits"]
    print(f"{result['traversals_per_model']} traversals per model ({result['digits']} test digits x 9 targets), "
          f"{result['steps']} steps of {result['step_size']} L2; judge {result['judge']}")
    print(f"reference, real test digits: nn {ref['nn']:.2f}, judge agrees {100 * ref['judge']:.1f} %")
    print(f"{'model':<10} {'point':<10} {'n':>5} {'own %':>7} {'judge %':>8} {'nn':>6} {'IM1':>6}")
    for name, row in result["per_model"].items():
        print(f"{name:<10} success {100 * row['success_rate']:.1f} %, median steps to flip "
              f"{row['median_steps_to_flip']}, median |d|2 at flip {row['median_l2_at_flip']}")
        for point in ["at_flip", *[f"at_l2_{d:g}" for d in DISTANCES], "at_last"]:
            r = row[point]
            if r["count"]:
                print(f"{name:<10} {point:<10} {r['count']:>5} {100 * r['own']:>7.1f} {100 * r['judge']:>8.1f} "
                      f"{r['nn']:>6.2f} {r['im1']:>6.2f}")


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, row in result["per_model"].items():
        pts = [c for c in row["curve"] if c["count"]]
        d = [c["l2"] for c in pts]
        axes[0].plot(d, [100 * c["judge"] for c in pts], marker="o", label=name)
        axes[1].plot(d, [c["nn"] for c in pts], marker="o", label=name)
        axes[2].plot(d, [c["im1"] for c in pts], marker="o", label=name)
    ref = result["reference_real_test_digits"]
    axes[1].axhline(ref["nn"], color="gray", ls="--", label="real test digits")
    axes[0].set_ylabel("independent judge says target (%)")
    axes[1].set_ylabel("nearest target training image / typical")
    axes[2].set_ylabel("IM1 (target AE / start AE error)")
    for ax in axes:
        ax.set_xlabel("‖δ‖₂ from the start")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Traversal realism against distance travelled")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
