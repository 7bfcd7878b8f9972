"""A lever for the two-sample test: a robust realism critic, measured outside the recipe.

    python benchmarks/bench_critic.py [--train-digits 200] [--first 200] [--digits 50] [--eps 1.0]
        [--refine STEPS:SIZE[:GAMMA[:EVERY]] ...] [--cache DIR] [--name NAME]

The shipped ``realistic`` recipe's endpoints (its traversal, then its finish, the cascade σ 0.3,
0.1, 0.05) are told from real digits by a fresh small CNN 84 % of the time on 450 held-out
traversals. This asks whether a *robust* critic can say what gives them away and move them
toward real digits:

1. Endpoints of MNIST *training* digits 0 … ``--train-digits`` (each to the 9 other classes) are
   the critic's fakes, training digits from 20,000 on of the same classes its reals (none of them
   a test digit: the held-out figures below never see the critic's data).
2. The critic, a small CNN, learns real (logit > 0) against fake with L2 PGD adversarial training
   at ``--eps`` (7 steps), as the robust classifiers are trained: a robust model's input gradient
   is perceptually aligned, so following it should change strokes, not add noise a fresh test
   net would learn to see.
3. ``--refine STEPS:SIZE[:GAMMA]``: each held-out endpoint (test digits ``--first`` … +``--digits``,
   as every recipe figure) takes STEPS normalized L2 steps of SIZE up the critic's logit, pixels
   kept in [0, 1]; with GAMMA the recipe's ensemble's normalized gradient toward the target,
   times GAMMA, is added to each step so that the class is held; with EVERY, every EVERY-th step
   is followed by the prior's last finish step (σ 0.05). Each refined frame is also shown
   after that step, which cleans what the steps left.

It prints, per variant, success at the endpoint (judge + nearest real; also against held-out test
images as the reference, and with the standard judge: the critic's reals are training images, as the
reference bank is), the two-sample test
against real test digits 1000–1999 of the same classes, the pixel profile and the critic's own
held-out accuracy, and writes ``<out>/<name>.json`` and a frames PNG. ``--cache`` keeps the
endpoints (the slow part, minutes) between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from bench_final_denoising import denoised, starts_and_targets
from bench_realism import REALISTIC_CENTRED, follow, frames_figure, pixel_profile, real_pool, two_sample_accuracy
from torch import nn

from training.train_critic import REALS_FROM, fit_critic, matching_reals
from trav_gui.engine.core.centring import centring_offsets, shift_batch
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.datasets import load_mnist, test_set
from trav_gui.engine.models.loading import load_model, load_recipe
from trav_gui.engine.models.priors import RealismCritic
from trav_gui.engine.models.recipes import Recipe
from trav_gui.engine.realism import RealismScorer, held_out_reference

CASCADE = (0.3, 0.1, 0.05)


def endpoints(recipe, x0: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """The shipped recipe's endpoints from ``x0`` to ``targets``: its traversal (200 L2 steps of
    0.1, stopped by its rule), then its finish; and each start's centring offsets."""
    run = follow(recipe, x0, targets, TraversalConfig(steps=200, step_size=0.1))
    offsets = centring_offsets(torch.from_numpy(x0)[:, None], recipe.recipe.max_centre_shift)
    return denoised(recipe.prior, run["last_img"], offsets, CASCADE), offsets


def cached_endpoints(recipe, x0, targets, path: Path | None) -> np.ndarray:
    """:func:`endpoints`, read from ``path`` when it holds them for these very starts and targets."""
    key = f"{np.asarray(x0).sum():.6f}:{np.asarray(targets).tobytes().hex()[:64]}:{len(targets)}"
    if path is not None and path.is_file():
        with np.load(path) as f:
            if str(f["key"]) == key:
                return f["last"]
    last, _ = endpoints(recipe, x0, targets)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, last=last, key=key)
        tmp.replace(path)
    return last


def refine(critic: nn.Module, classifier, images: np.ndarray, offsets: torch.Tensor, targets: np.ndarray,
           steps: int, size: float, gamma: float = 0.0, prior=None, every: int = 0) -> np.ndarray:
    """``images`` moved ``steps`` normalized L2 steps of ``size`` up the critic's logit (seen as
    they are), plus ``gamma`` times the classifiers' normalized step toward each target (seen
    centred, as the recipe sees them); pixels kept in [0, 1]. With ``every``, each ``every``-th
    step is followed by the prior's clean estimate at σ 0.05 (seen centred)."""
    x = torch.from_numpy(np.ascontiguousarray(images))[:, None].clone()
    rows, t = torch.arange(len(x)), torch.from_numpy(targets)

    def unit(g):
        return g / g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]

    for i in range(steps):
        x.requires_grad_(True)
        g, = torch.autograd.grad(critic(x).sum(), x)
        step = unit(g)
        if gamma:
            lp = torch.log_softmax(classifier(shift_batch(x, offsets)), -1)[rows, t].sum()
            gc, = torch.autograd.grad(lp, x)
            step = step + gamma * unit(gc)
        x = (x.detach() + size * unit(step)).clamp(0, 1)
        if every and (i + 1) % every == 0 and i + 1 < steps:
            with torch.no_grad():
                x = shift_batch(prior(shift_batch(x, offsets), 0.05), -offsets).clamp_(0.0, 1.0)
    return x[:, 0].detach().numpy()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-digits", type=int, default=200, help="training digits whose endpoints the critic sees")
    p.add_argument("--first", type=int, default=200)
    p.add_argument("--digits", type=int, default=50)
    p.add_argument("--start-class", type=int, nargs="+", default=None, metavar="C",
                   help="start from test digits of these classes only: the --first-th to the (--first + --digits)-th "
                        "of each (--first 0 --digits 20 and every class: the success map's starts)")
    p.add_argument("--eps", type=float, nargs="+", default=[1.0], help="the critic's L2 radius (each a critic)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--refine", nargs="+", default=["10:0.1", "30:0.1", "30:0.1:1"], metavar="STEPS:SIZE[:GAMMA[:EVERY]]")
    p.add_argument("--cache", type=Path, default=None, help="a folder to keep the endpoints in between runs")
    p.add_argument("--name", default="critic_finish")
    p.add_argument("--out", type=Path, default=Path("docs"))
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    recipe = load_recipe(Recipe(**REALISTIC_CENTRED))
    train_x, train_y, _ = load_mnist(train=True)
    train_x, train_y = train_x[:, 0].numpy(), train_y.numpy()
    tstarts = np.repeat(np.arange(args.train_digits), 9)
    ttargets = np.array([t for i in range(args.train_digits) for t in range(10) if t != train_y[i]])
    print(f"{len(ttargets)} training traversals for the critic's fakes", file=sys.stderr, flush=True)
    fake = cached_endpoints(recipe, train_x[tstarts], ttargets,
                            args.cache / f"critic_fakes_{args.train_digits}.npz" if args.cache else None)
    real = matching_reals(train_x[REALS_FROM:], train_y[REALS_FROM:], ttargets)

    images, labels = test_set("mnist")
    _, starts, targets = starts_and_targets(labels, args.first, args.digits, args.start_class)
    x0 = images[starts].astype(np.float32) / 255.0
    print(f"{len(targets)} held-out traversals", file=sys.stderr, flush=True)
    last = cached_endpoints(recipe, x0, targets,
                            args.cache / f"critic_heldout_{args.first}_{args.digits}{'_by_class' if args.start_class else ''}.npz" if args.cache else None)
    offsets = centring_offsets(torch.from_numpy(x0)[:, None], recipe.recipe.max_centre_shift)
    scorer = RealismScorer(judge=load_model("judge"))
    # Controls: the critic's reals are training images, as the reference bank is (1,000 drawn per
    # class): does its gain hold against test images (held out) and with the other judge?
    held_out = RealismScorer(judge=scorer.judge)
    held_out.reference = held_out_reference("mnist")
    standard = RealismScorer(judge=load_model("judge-standard"))
    test_real = real_pool(images, labels, targets)

    variants = {"the shipped recipe's endpoint": last}
    critics = {}
    for eps in args.eps:
        saved = args.cache / f"critic_eps{eps:g}_{args.train_digits}_{args.epochs}.pt" if args.cache else None
        critic = RealismCritic()
        if saved is not None and saved.is_file():
            fit = json.loads(saved.with_suffix(".json").read_text())
            fit.setdefault("accuracy", fit.pop("held_out_clean", None))  # the names of the first runs' files
            fit.setdefault("accuracy_pgd20", fit.pop("held_out_attacked", None))
            state = torch.load(saved)  # written before the critic was the engine's: keys without "net."
            critic.load_state_dict({k if k.startswith("net.") else f"net.{k}": v for k, v in state.items()})
            critic.eval()
        else:
            torch.manual_seed(0)
            critic = RealismCritic()
            fit = {"eps": eps, "epochs": args.epochs, "fakes": len(fake),
                   **fit_critic(critic, fake[:, None], real[:, None], eps, args.epochs, 0)}
            if saved is not None:
                torch.save(critic.state_dict(), saved)
                saved.with_suffix(".json").write_text(json.dumps(fit))
        for q in critic.parameters():
            q.requires_grad_(False)
        critics[f"{eps:g}"] = fit
        print(f"critic eps {eps:g}: held-out accuracy {100 * fit['accuracy']:.1f} %, attacked "
              f"{100 * fit['accuracy_pgd20']:.1f} %", flush=True)
        with torch.no_grad():
            fit["held_out_endpoints_called_real"] = float((critic(torch.from_numpy(last)[:, None]) > 0).float().mean())
            fit["test_reals_called_real"] = float((critic(torch.from_numpy(test_real)[:, None]) > 0).float().mean())
        for spec in args.refine:
            steps, size, *more = spec.split(":")
            out = refine(critic, recipe.classifier, last, offsets, targets, int(steps), float(size),
                         float(more[0]) if more else 0.0, recipe.prior, int(more[1]) if len(more) > 1 else 0)
            variants[f"critic eps {eps:g}, {spec}"] = out
            variants[f"critic eps {eps:g}, {spec}, then denoised at 0.05"] = denoised(recipe.prior, out, offsets, [0.05])
    result = {"traversals": len(targets), "first": args.first, "digits": args.digits, "critics": critics,
              "variants": {}}
    for name, frames in variants.items():
        ok = scorer.verdicts(frames, targets)[2]
        v = result["variants"][name] = {"success_last": float(ok.mean()),
                                        "success_last_held_out_reference": float(held_out.verdicts(frames, targets)[2].mean()),
                                        "success_last_standard_judge": float(standard.verdicts(frames, targets)[2].mean()),
                                        "two_sample_last": two_sample_accuracy(frames, test_real),
                                        "pixels": pixel_profile(frames),
                                        "l2_from_endpoint": float(np.linalg.norm((frames - last).reshape(len(last), -1),
                                                                                 axis=1).mean())}
        print(f"{name:<52} success {100 * v['success_last']:.1f} % (held-out reference "
              f"{100 * v['success_last_held_out_reference']:.1f} %, standard judge "
              f"{100 * v['success_last_standard_judge']:.1f} %), two-sample {100 * v['two_sample_last']:.1f} %, "
              f"ink {v['pixels']['ink']:.0f}, black {100 * v['pixels']['black']:.0f} %, "
              f"moved {v['l2_from_endpoint']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    pick = np.arange(0, len(targets), max(1, len(targets) // 16))[:16]
    rows = {"start": x0[pick], **{k: v[pick] for k, v in variants.items() if "then" not in k},
            "real, same class": test_real[np.searchsorted(np.sort(targets), targets[pick])]}
    frames_figure(rows, args.out / f"{args.name}_frames.png")
    print(f"wrote {args.out}/{args.name}.json and its frames PNG", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
