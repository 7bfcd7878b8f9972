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
- in colour worlds (``--dataset colored-mnist``), ``colour_kept`` and ``colour_kept_last``: the
  share of traversals whose added ink keeps the start's hue (within ±30°) at the confident point
  and at the last frame (one that never gets confident fails), and ``grey``, the median share of
  the added ink that is colourless.

Writes ``<out>/realism_levers.json`` and ``<out>/realism_levers.png`` (success per lever and
the ε ladder's accuracy/realism trade-off) and prints the table.
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
from trav_gui.engine.files import write_bytes_atomic
from trav_gui.engine.models.card import card_path, read_card
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.loading import list_models, load_model, load_recipe, resolve_model_path
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.realism import CONFIDENT_PROB, held_out_reference, judge_name, noise_growth, reference_set, ssim

# name -> (what it is, a model/recipe name or a Recipe)
LEVERS: dict[str, tuple[str, str | Recipe]] = {
    "standard": ("standard training", "standard"),
    "robust": ("robust, L2 eps 2 (shipped)", "robust"),
    "eps1": ("robust, eps 1", "robust-eps1"),
    "eps3": ("robust, eps 3", "robust-eps3"),
    "eps4": ("robust, eps 4", "robust-eps4"),
    "shift": ("robust eps 2 + shifts of up to 2 px", "robust-shift"),
    "dae": ("robust + denoising autoencoder, lambda 0.05", Recipe(("robust",), prior="dae-mnist", prior_weight=0.05)),
    "score": ("robust + score model, lambda 0.15, sigma 0.5 -> 0.2",
              Recipe(("robust",), prior="score-mnist", prior_weight=0.15, sigma_max=0.5, sigma_min=0.2)),
    "step2.5": ("robust, steps 2.5 x longer", Recipe(("robust",), step_scale=2.5)),
    "ensemble": ("mean log-prob of robust and eps3", Recipe(("robust", "robust-eps3"))),
    "decay": ("robust, step size x 0.99 per step", Recipe(("robust",), step_decay=0.99)),
    "stop": ("robust, stop at the confident point", Recipe(("robust",), stop="confident")),
    "realistic": ("the shipped recipe", "realistic"),
}


def load_lever(spec: str | Recipe, device: str):
    if isinstance(spec, Recipe):
        return load_recipe(spec, device=device)
    return load_model(spec, device=device)


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


def measure(run: dict, x0: np.ndarray, targets: np.ndarray, judges: dict, ref, held, device: str,
            dataset: str = "mnist") -> dict:
    ds = get_dataset(dataset)
    reached = run["conf_step"] >= 0
    flipped = run["flip_step"] >= 0
    n = len(targets)
    nn_c, nn_l, nn_t = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    thr, thr_t = ref.p90[targets], held.p90[targets]
    for c in range(ds.num_classes):
        sel = targets == c
        nn_c[sel] = ref.nearest(run["conf_img"][sel], c)[0]
        nn_l[sel] = ref.nearest(run["last_img"][sel], c)[0]
        nn_t[sel] = held.nearest(run["conf_img"][sel], c)[0]
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
        row["judges"][name] = {
            "agree": float(at_conf[reached].mean()) if reached.any() else None,
            "agree_at_flip": float(at_flip[flipped].mean()) if flipped.any() else None,
            "success": float((reached & at_conf & (nn_c <= thr)).mean()),
            "success_test": float((reached & at_conf & (nn_t <= thr_t)).mean()),
            "success_last": float((at_last & (nn_l <= thr)).mean()),
        }
    return row


def real_digits(images, labels, judges, ref, held, device, dataset: str = "mnist") -> dict:
    """The same metrics for real test digits (1000-1899, neither starts nor references): the ceiling."""
    ds = get_dataset(dataset)
    x = images[1000:1900].astype(np.float32) / 255.0
    y = labels[1000:1900].astype(int)
    nn_r, nn_t = np.zeros(len(y)), np.zeros(len(y))
    for c in range(ds.num_classes):
        nn_r[y == c] = ref.nearest(x[y == c], c)[0]
        nn_t[y == c] = held.nearest(x[y == c], c)[0]
    out = {"nn": float(np.median(nn_r)), "nn_test": float(np.median(nn_t)), "judges": {}}
    for name, judge in judges.items():
        ok = judge_says(judge, x, device, ds.shape) == y
        out["judges"][name] = {"agree": float(ok.mean()), "success": float((ok & (nn_r <= ref.p90[y])).mean()),
                               "success_test": float((ok & (nn_t <= held.p90[y])).mean())}
    return out


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
    p.add_argument("--write-card", action="store_true",
                   help="store the realistic recipe's measured figures (and its clean accuracy) in its card")
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
    starts = np.repeat(np.array(digits), ds.num_classes - 1)
    targets = np.array([t for i in digits for t in range(ds.num_classes) if t != labels[i]])
    x0 = images[starts].astype(np.float32) / 255.0
    ref, held = reference_set(args.dataset), held_out_reference(args.dataset)
    config = TraversalConfig(steps=args.steps, step_size=args.step_size)
    result = {"dataset": args.dataset, "digits": args.digits, "first": args.first, "traversals": len(targets), "steps": args.steps,
              "step_size": args.step_size, "confident_prob": CONFIDENT_PROB, "judges": list(judges),
              "real_digits": real_digits(images, labels, judges, ref, held, args.device, args.dataset), "levers": {}}
    for name in args.levers:
        what, spec = LEVERS.get(name, (name, name))
        try:
            model = load_lever(spec, args.device)
        except (ModelLoadError, PriorLoadError, RecipeError) as exc:
            print(f"skipping lever {name}: {exc}", file=sys.stderr)
            continue
        t0 = time.time()
        run = follow(model, x0, targets, config, ds.shape)
        row = {"what": what, **measure(run, x0, targets, judges, ref, held, args.device, args.dataset),
               "seconds": round(time.time() - t0, 1)}
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
    clean, samples = clean_accuracy(model, dataset, device)
    first = result["judges"][0]
    card["evaluation"] = {
        "test_samples": samples, "clean_accuracy": clean,
        "realism": {"traversals": result["traversals"], "steps": result["steps"], "step_size": result["step_size"],
                    "starts": f"test images {result.get('first', 0)}-{result.get('first', 0) + result['digits'] - 1}",
                    "success": row["judges"][first]["success"],
                    "success_by_judge": {j: v["success"] for j, v in row["judges"].items()},
                    "judge_agreement": {j: v["agree"] for j, v in row["judges"].items()},
                    **{k: row[k] for k in ("reach", "nn", "nn_test", "growth", "l2", "ssim", "colour_kept",
                                           "colour_kept_last", "grey") if k in row},
                    "measured_by": "benchmarks/bench_realism.py"}}
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
    print(f"{result['traversals']} traversals per lever ({result['digits']} test digits x 9 targets), "
          f"{result['steps']} steps of {result['step_size']}; at the confident point (p >= {result['confident_prob']})")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    real = result["real_digits"]
    print("| real test digits | – | " + " | ".join(_pct(real["judges"][j]["agree"]) for j in judges) + " | "
          + " | ".join(_pct(real["judges"][j]["success"]) for j in judges)
          + f" | {_pct(real['judges'][judges[0]]['success_test'])} | {_num(real['nn'])} | {_num(real['nn_test'])}"
          " | – | – | – | – |" + (" – | – | – |" if colour else ""))
    for name, row in result["levers"].items():
        j = row["judges"]
        cells = [name, _pct(row["reach"])] + [_pct(j[k]["agree"]) for k in judges]
        cells += [_pct(j[k]["success"]) for k in judges]
        cells += [_pct(j[judges[0]]["success_test"]), _num(row["nn"]), _num(row["nn_test"]), _num(row["growth"]),
                  _num(row["l2"]), _num(row["ssim"]), _pct(j[judges[0]]["success_last"])]
        if colour:
            cells += [_pct(row.get("colour_kept")), _pct(row.get("colour_kept_last")), _num(row.get("grey"))]
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
