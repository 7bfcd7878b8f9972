"""Measure a model's clean and L2-robust accuracy on its data set's shipped test set.

    python -m training.evaluate robust [--eps 2.0] [--attack-steps 100] [--restarts 5] [--write-card]

Clean accuracy is taken on all 10,000 test digits (the copy shipped in ``resources/``).
Robust accuracy under L2 PGD with random restarts: a digit counts as robust only if no
restart fools the model (restarts attack only the digits still standing, which gives the
same figure faster). PGD alone overstates robustness, so the evaluator then attacks the
PGD survivors with AutoAttack's APGD-CE and targeted APGD-DLR (from torchattacks) and
reports the worst case per digit beside PGD's figure. Extra radii (``--curve-eps``) give
the card a robustness curve rather than a point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from trav_gui.engine.core.centring import shift_batch
from trav_gui.engine.core.steps import L2Step
from trav_gui.engine.data.datasets import DEFAULT_DATASET, all_datasets, get_dataset, test_images
from trav_gui.engine.models.card import ModelCard, card_path, read_card
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import load_model, resolve_model_path
from trav_gui.engine.models.weights import save_model

BATCH = 500
CARD_SAMPLES = 1000  # the first N test digits every card's worst case is measured on
SHIFT_DIRECTIONS = ((1, 1), (-1, -1), (1, -1), (-1, 1))  # down-right, up-left, down-left, up-right in turn


def _batches(n: int, progress: bool, desc: str):
    starts = range(0, n, BATCH)
    return tqdm(starts, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True) if progress else starts


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i: i + BATCH]).argmax(1) for i in range(0, len(x), BATCH)])


def _fraction(mask: torch.Tensor) -> float:
    """Exact count / total as a Python float: the same figure on every device."""
    return mask.sum().item() / mask.numel()


def clean_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` (N, C, H, W) in [0, 1] that ``model`` labels ``y``."""
    return _fraction(predict(model, x) == y)


def _pgd_fooled(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: L2Step, steps: int,
                generator: torch.Generator) -> torch.Tensor:
    """(N,) bool: fooled at some iterate of one L2-PGD run from a random start.

    Every iterate lies in the eps-ball, so the first one that is misclassified is a valid
    adversarial example; that input then leaves the batch, which makes the attack both at
    least as strong as checking the last iterate and much cheaper on weak models.
    """
    adv = step.random_start(x, generator)
    fooled = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    active = torch.arange(len(y), device=y.device)
    for i in range(steps + 1):
        a = adv[active].requires_grad_(True)
        with torch.enable_grad():
            logits = model(a)
            wrong = logits.argmax(1) != y[active]
            fooled[active[wrong]] = True
            keep = ~wrong
            if i == steps or not keep.any():
                break
            loss = F.cross_entropy(logits[keep], y[active[keep]], reduction="sum")
            (grad,) = torch.autograd.grad(loss, a)
        active = active[keep]
        adv[active] = step.advance(a.detach()[keep], x[active], grad[keep])
    return fooled


def pgd_survivors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
                  restarts: int, step_size: float | None = None, seed: int = 0,
                  progress: bool = True) -> torch.Tensor:
    """(N,) bool: correctly classified and not fooled by any of ``restarts`` L2-PGD runs.

    Step size defaults to ``2.5 * eps / steps`` (Madry et al.), at least ``eps / 40``.
    """
    step = L2Step(step_size or max(2.5 * eps / steps, eps / 40), eps)
    generator = torch.Generator().manual_seed(seed)
    alive = predict(model, x) == y
    for r in range(restarts):
        idx = alive.nonzero().squeeze(1)
        for s in _batches(len(idx), progress, f"PGD-{steps} eps {eps} restart {r + 1}/{restarts}"):
            b = idx[s: s + BATCH]
            alive[b] = ~_pgd_fooled(model, x[b], y[b], step, steps, generator)
    return alive


def pgd_accuracy(model, x, y, eps, steps=100, restarts=5, progress=True) -> float:
    return _fraction(pgd_survivors(model, x, y, eps, steps, restarts, progress=progress))


def apgd_survivors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, alive: torch.Tensor,
                   eps: float, steps: int = 100, progress: bool = True, num_classes: int = 10) -> torch.Tensor:
    """Attack the still-robust digits with APGD-CE, then targeted APGD-DLR (which needs 4 classes or
    more: its loss reads the 3rd and 4th largest logits); (N,) bool survivors."""
    import torchattacks

    alive = alive.clone()
    attacks = [("APGD-CE", torchattacks.APGD(model, norm="L2", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=0))]
    if num_classes >= 4:
        attacks.append(("APGD-T", torchattacks.APGDT(model, norm="L2", eps=eps, steps=steps, n_restarts=1,
                                                     n_classes=num_classes, seed=0)))
    for name, attack in attacks:
        idx = alive.nonzero().squeeze(1)
        for s in _batches(len(idx), progress, f"{name} eps {eps}"):
            b = idx[s: s + BATCH]
            adv = attack(x[b], y[b])
            # Count a digit as fooled only if the returned image really lies in the ball.
            inside = (adv - x[b]).flatten(1).norm(dim=1) <= eps * (1 + 1e-4)
            alive[b] = ~(inside & (predict(model, adv) != y[b]))
    return alive


def evaluate(model: nn.Module, eps: float = 2.0, attack_steps: int = 100, restarts: int = 5,
             curve_eps: tuple[float, ...] = (1.0, 3.0), limit: int | None = None,
             apgd_limit: int | None = 1000, curve_limit: int | None = None,
             progress: bool = True, device: str | torch.device = "cpu", dataset: str = DEFAULT_DATASET,
             attack_limit: int | None = None, shift: int = 0) -> dict:
    """Clean and robust accuracies on ``dataset``'s shipped test set, as a JSON-ready dict.

    See the module docstring. ``shift`` > 0 moves the i-th test image that many pixels down-right,
    up-left, down-left and up-right in turn (zero fill): how a shift-trained model fares off centre.
    """
    x, y = test_images(dataset, limit)
    if shift:
        x = shift_batch(x, shift * torch.tensor(SHIFT_DIRECTIONS)[torch.arange(len(x)) % len(SHIFT_DIRECTIONS)])
    x, y = x.to(device), y.to(device)
    model = model.to(device)
    n = len(y)
    t0 = time.time()
    result = {"dataset": dataset, "test_samples": n, **({"test_shift_px": shift} if shift else {}),
              "clean_accuracy": clean_accuracy(model, x, y), "robust": []}
    for e in (eps, *curve_eps):
        limit_here = attack_limit if e == eps else (curve_limit or attack_limit)
        k = n if limit_here is None else min(limit_here, n)
        alive = pgd_survivors(model, x[:k], y[:k], e, attack_steps, restarts, progress=progress)
        result["robust"].append({"eps": e, "attack": f"L2 PGD-{attack_steps}, {restarts} restarts",
                                 "samples": k, "accuracy": _fraction(alive)})
        if e == eps and apgd_limit != 0:
            m = n if apgd_limit is None else min(apgd_limit, n)
            k_classes = get_dataset(dataset).num_classes
            worst = apgd_survivors(model, x[:m], y[:m], alive[:m], e, attack_steps, progress, k_classes)
            apgd = "APGD-CE and APGD-T (DLR)" if k_classes >= 4 else "APGD-CE"
            result["robust"].append({
                "eps": e, "samples": m,
                "attack": f"worst case of PGD-{attack_steps} x{restarts}, {apgd}, {attack_steps} steps",
                "accuracy": _fraction(worst),
                "pgd_accuracy_same_samples": _fraction(alive[:m])})
            if m > CARD_SAMPLES:  # the same run's figure on the other cards' sample, to compare like with like
                result["robust"].append({
                    "eps": e, "samples": CARD_SAMPLES,
                    "attack": f"worst case of PGD-{attack_steps} x{restarts}, {apgd}, {attack_steps} steps "
                              f"(the first {CARD_SAMPLES:,} test digits, the sample of the other cards)",
                    "accuracy": _fraction(worst[:CARD_SAMPLES]),
                    "pgd_accuracy_same_samples": _fraction(alive[:CARD_SAMPLES])})
    result["seconds"] = round(time.time() - t0, 1)
    return result


def format_table(name: str, result: dict) -> str:
    lines = [f"model {name}: clean accuracy {100 * result['clean_accuracy']:.2f} % "
             f"on {result['test_samples']} test images"
             + (f" moved {result['test_shift_px']} px" if result.get("test_shift_px") else ""),
             f"{'eps':>5}  {'robust acc':>10}  {'samples':>7}  attack"]
    for r in result["robust"]:
        lines.append(f"{r['eps']:>5.2f}  {100 * r['accuracy']:>9.2f} %  {r['samples']:>7}  {r['attack']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help='"robust", "standard" or a .safetensors path')
    p.add_argument("--eps", type=float, default=2.0)
    p.add_argument("--attack-steps", type=int, default=100)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--curve-eps", type=float, nargs="*", default=[1.0, 3.0])
    p.add_argument("--limit", type=int, default=None, help="first N test digits only")
    p.add_argument("--apgd-limit", type=int, default=1000,
                   help="run APGD on the first N test digits (0: skip; -1: all)")
    p.add_argument("--curve-limit", type=int, default=None,
                   help="attack only the first N test digits at the --curve-eps radii")
    p.add_argument("--attack-limit", type=int, default=None,
                   help="attack only the first N test images at every radius (clean accuracy stays on all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help='torch device, e.g. "cuda" (default cpu)')
    p.add_argument("--dataset", choices=sorted(all_datasets()), default=None,
                   help="the test set (default: the data set named by the model card, else mnist)")
    p.add_argument("--shift", type=int, default=0, metavar="PX",
                   help="move every test image PX pixels (diagonally, the four directions in turn, zero fill)")
    p.add_argument("--write-card", action="store_true", help="store the figures in the model card")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    if not 0 <= args.shift <= 8:
        p.error(f"--shift must be between 0 and 8 pixels, got {args.shift}")
    if args.shift and args.write_card:
        p.error("--write-card stores the figures on the test set as it is: leave out --shift")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
        path = resolve_model_path(args.model)
    except ModelLoadError as exc:
        sys.exit(f"error: {exc}")
    card = read_card(path) or ModelCard()
    card_dataset = card.dataset
    if args.dataset and args.dataset != card_dataset:
        sys.exit(f"error: {path.name} was trained on {card_dataset}, not {args.dataset}; "
                 f"its accuracy on {args.dataset} would mean nothing")
    result = evaluate(model, args.eps, args.attack_steps, args.restarts, tuple(args.curve_eps),
                      args.limit, None if args.apgd_limit < 0 else args.apgd_limit, args.curve_limit,
                      device=args.device, dataset=card_dataset, attack_limit=args.attack_limit,
                      shift=args.shift)
    print(format_table(path.stem, result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.write_card:
        # Rewrites weights and card together so that the card's sha256 stays right.
        save_model(model, path, {**card.to_json(), "evaluation": result}, card.architecture or "small_cnn")
        print(f"wrote the figures into {card_path(path)}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
