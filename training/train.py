"""Train the standard or the L2-PGD adversarially robust classifier of a data set (MNIST, Fashion-MNIST).

    python -m training.train --kind robust --epochs 10 --eps 2.0 --attack-steps 7 \\
        --out resources/models/robust.safetensors --seed 0

Robust training (Madry et al. 2018): for every batch, find L2-bounded adversarial examples
with PGD from a random start, using the very step class the app's traversal uses
(``trav_gui.engine.core.steps.L2Step``), and take the optimizer step on them. With
``--loss trades`` (Zhang et al. 2019) the attack instead ascends the KL divergence of the
prediction from the clean one, and the step is on the clean cross-entropy plus β times that
divergence at the adversarial point (``--trades-beta``, default 6); the learning curve's train
loss and accuracy are then TRADES's loss and the clean batch's accuracy.

After each epoch a checkpoint (``<out>.ckpt/``, safetensors + JSON, no pickle) is written
atomically; ``--resume <out>.ckpt`` continues after an interrupt, losing at most the epoch in
progress. A learning curve ``<out>.curve.csv`` (epoch, loss, clean and robust accuracy on a
fixed test subset) is kept. At the end the weights and their model card are written, with the
accuracies measured by ``training.evaluate``. With ``--ema DECAY`` an exponential moving average
of the weights (updated after every optimizer step) is kept, checkpointed beside the model,
measured for the learning curve, and is what is evaluated and written.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from training import evaluate
from trav_gui import __version__
from trav_gui.engine.core.attacks import pgd
from trav_gui.engine.core.centring import shift_batch
from trav_gui.engine.core.steps import L2Step
from trav_gui.engine.data.datasets import (
    DEFAULT_DATASET,
    DatasetUnavailableError,
    all_datasets,
    get_dataset,
    load_training_set,
    user_judge_path,
)
from trav_gui.engine.files import atomic_path
from trav_gui.engine.models.architectures import ARCHITECTURES, build
from trav_gui.engine.models.weights import save_model

CURVE_FIELDS = ["epoch", "loss", "train_acc", "clean_acc", "robust_acc", "seconds"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=["standard", "robust"], required=True)
    p.add_argument("--dataset", choices=sorted(all_datasets()), default=DEFAULT_DATASET,
                   help="the data set to train on: shipped or a user's (trav-gui datasets); default mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eps", type=float, default=2.0, help="L2 radius of the training attack")
    p.add_argument("--attack-steps", type=int, default=7)
    p.add_argument("--attack-step-size", type=float, default=None,
                   help="default: eps / 4 (0.5 for eps 2)")
    p.add_argument("--loss", choices=["madry", "trades"], default="madry",
                   help="robust: train on the PGD examples' cross-entropy (Madry et al., default) or with "
                        "TRADES (Zhang et al. 2019): clean cross-entropy + beta * KL(clean || adversarial)")
    p.add_argument("--trades-beta", type=float, default=6.0, help="with --loss trades: the weight of the KL term")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="small_cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam, cosine-annealed to 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None,
                   help="start from these weights (a model name or .safetensors) instead of random ones: "
                        "a curriculum, e.g. robust at eps 2 fine-tuned at eps 3 (from scratch, eps >= 3 "
                        "stays at chance for the first epoch)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="write the exponential moving average of the weights with this decay per step (e.g. 0.999); "
                        "0: the last weights")
    p.add_argument("--awp", type=float, default=0.0, metavar="GAMMA",
                   help="robust: adversarial weight perturbation (Wu et al. 2020): take every step at weights "
                        "moved up the loss by GAMMA times each layer's norm (e.g. 0.005); default 0: off")
    p.add_argument("--shift", type=int, default=0,
                   help="translation augmentation: shift every training image by up to this many pixels "
                        "in x and y (zero fill), before the attack")
    p.add_argument("--shift-fraction", type=float, default=1.0, metavar="F",
                   help="with --shift: move only this share of the training images (each drawn at random), "
                        "the rest stay where the data set has them (default 1: every image)")
    p.add_argument("--eps-warmup", type=float, default=0.0, metavar="EPOCHS",
                   help="robust: raise the attack's radius (and its step) linearly from 0 to --eps over the "
                        "first EPOCHS epochs, per batch, so that training from scratch does not stall at "
                        "chance (default 0: the full radius from the start)")
    p.add_argument("--out", type=Path, default=None,
                   help="the .safetensors file to write (with --judge on a user's data set: its folder's judge)")
    p.add_argument("--judge", action="store_true",
                   help="train the data set's independent judge of realism (its card says role judge: never "
                        "traversed); use another --arch and --seed than the traversed models")
    p.add_argument("--data-root", default=None, help="data root (default $TRAV_GUI_DATA or ~/.cache/trav_gui/data)")
    p.add_argument("--download", action="store_true", help="download the data set to the data root if missing")
    p.add_argument("--resume", type=Path, default=None, help="a <out>.ckpt folder to continue from")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (tests)")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate the final model on N test images only")
    p.add_argument("--curve-samples", type=int, default=500, help="test images for the per-epoch curve")
    p.add_argument("--eval-attack-steps", type=int, default=100)
    p.add_argument("--eval-eps", type=float, default=None,
                   help="robust: the L2 radius the learning curve and the final evaluation measure at "
                        "(default --eps), e.g. train at eps 2.5 and measure at the eps 2 of the cards")
    p.add_argument("--eval-restarts", type=int, default=5)
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation (card gets no accuracies)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help='torch device, e.g. "cuda" (default cpu)')
    args = p.parse_args(argv)
    if args.out is None:
        home = user_judge_path(args.dataset) if args.judge else None
        if home is None:
            p.error("--out is required (except with --judge on a user's data set)")
        args.out = home
    if args.out.suffix != ".safetensors":
        p.error("--out must end in .safetensors")
    if args.epochs < 1 or args.eps <= 0 or args.attack_steps < 1 or args.batch_size < 1:
        p.error("--epochs, --eps, --attack-steps and --batch-size must be positive")
    if args.loss == "trades" and (args.kind != "robust" or args.trades_beta <= 0):
        p.error("--loss trades trains a robust model with --trades-beta > 0")
    if args.awp and (args.kind != "robust" or not 0.0 < args.awp < 0.1):
        p.error(f"--awp trains a robust model with 0 < GAMMA < 0.1, got {args.awp}")
    if not 0.0 <= args.ema < 1.0:
        p.error(f"--ema must be in [0, 1), got {args.ema}")
    if not 0 <= args.shift <= 8:
        p.error("--shift must be between 0 and 8 pixels")
    if not 0.0 < args.shift_fraction <= 1.0:
        p.error(f"--shift-fraction must be in (0, 1], got {args.shift_fraction}")
    if not 0 <= args.eps_warmup <= args.epochs:
        p.error(f"--eps-warmup must be between 0 and --epochs ({args.epochs}), got {args.eps_warmup}")
    if args.eval_eps is None:
        args.eval_eps = args.eps
    if args.eval_eps <= 0:
        p.error(f"--eval-eps must be positive, got {args.eval_eps}")
    if args.attack_step_size is None:
        args.attack_step_size = args.eps / 4
    return args


def trades_divergence(model, x: torch.Tensor):
    """TRADES's attack objective for clean inputs ``x``: the summed KL divergence of a prediction
    from the model's (fixed) prediction on ``x``."""
    with torch.no_grad():
        clean = F.log_softmax(model(x), 1)
    return lambda logits: F.kl_div(F.log_softmax(logits, 1), clean, reduction="sum", log_target=True)


def batch_loss(model, args: argparse.Namespace, inputs: tuple[torch.Tensor, ...], y: torch.Tensor):
    """The logits and loss of one training batch: ``inputs`` is (clean, adversarial) for TRADES (clean
    cross-entropy + beta * KL(clean || adversarial)), else (x,) for the cross-entropy on x."""
    if len(inputs) == 2:
        logits, adv_logits = model(torch.cat(inputs)).split(len(y))
        return logits, F.cross_entropy(logits, y) + args.trades_beta * F.kl_div(
            F.log_softmax(adv_logits, 1), F.log_softmax(logits, 1), reduction="batchmean", log_target=True)
    logits = model(inputs[0])
    return logits, F.cross_entropy(logits, y)


def weight_perturbation(model, loss: torch.Tensor, gamma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Adversarial weight perturbation (Wu et al. 2020, "AWP"): move every weight matrix and kernel
    of ``model`` up the gradient of ``loss`` (computed at the current weights) by ``gamma`` times its
    own norm (layer by layer; biases and other vectors stay). Returns the (weight, move) pairs, to be
    undone by :func:`take_back` after the training step's backward pass, so that the step is taken at
    the worst nearby weights."""
    weights = [w for w in model.parameters() if w.requires_grad and w.dim() > 1]
    grads = torch.autograd.grad(loss, weights)
    moved = []
    with torch.no_grad():
        for weight, grad in zip(weights, grads, strict=True):
            norm = grad.norm()
            if norm == 0:
                continue
            delta = grad * (gamma * weight.norm() / norm)
            weight.add_(delta)
            moved.append((weight, delta))
    return moved


def take_back(moved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Undo :func:`weight_perturbation`'s moves."""
    with torch.no_grad():
        for weight, delta in moved:
            weight.sub_(delta)


def lr_at(args: argparse.Namespace, iteration: int, total: int) -> float:
    return args.lr * 0.5 * (1 + math.cos(math.pi * iteration / total))


def eps_scale_at(args: argparse.Namespace, iteration: int, per_epoch: int) -> float:
    """The share of ``--eps`` the attack uses at ``iteration`` (0-based): rising linearly to 1 at
    the end of the first ``--eps-warmup`` epochs, 1 after them (and always without a warm-up)."""
    warm = args.eps_warmup * per_epoch
    return 1.0 if warm <= 0 else min(1.0, (iteration + 1) / warm)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator,
                 fraction: float = 1.0) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) moved by its own integer (dy, dx) in [-max_shift, max_shift],
    the uncovered border filled with 0 (background). With ``fraction`` < 1 each image is moved
    only with that probability, the others stay in place (the draws for 1 are those of before)."""
    if max_shift == 0:
        return x
    n = x.shape[0]
    offsets = max_shift - torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).T  # (N, 2)
    if fraction < 1.0:
        offsets = offsets.masked_fill((torch.rand(n, generator=generator) >= fraction)[:, None], 0)
    return shift_batch(x, offsets.to(x.device))


def _ckpt_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def save_checkpoint(folder: Path, model, optimizer, epoch: int, history: list[dict], args,
                    extra: dict[str, torch.nn.Module] | None = None) -> None:
    """Write model, optimizer and progress to ``folder`` atomically (no pickle); each module of
    ``extra`` (an averaged copy of the model, say) as ``<name>.safetensors`` beside them."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    for name, module in (extra or {}).items():
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp / f"{name}.safetensors"))
    opt_tensors, opt_scalars = {}, {}
    for idx, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                opt_tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                opt_scalars[f"{idx}.{key}"] = value
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {"epoch": epoch, "history": history, "opt_scalars": opt_scalars,
            "args": {k: str(v) for k, v in vars(args).items()}}
    (tmp / "state.json").write_text(json.dumps(meta, indent=2))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, model, optimizer, device="cpu",
                    extra: dict[str, torch.nn.Module] | None = None) -> tuple[int, list[dict]]:
    meta = json.loads((folder / "state.json").read_text())
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    for name, module in (extra or {}).items():
        if not (folder / f"{name}.safetensors").is_file():
            sys.exit(f"error: {folder} has no {name}.safetensors: it was written without --{name}; "
                     f"resume it without --{name}, or start again")
        module.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(device)))
    tensors = load_file(str(folder / "optimizer.safetensors"), device=str(device))
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["opt_scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = torch.as_tensor(value).cpu() if key == "step" else value
    sd = optimizer.state_dict()
    sd["state"] = state
    optimizer.load_state_dict(sd)
    return int(meta["epoch"]), list(meta["history"])


def write_curve(path: Path, history: list[dict], fields: list[str] = CURVE_FIELDS) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)


def prepare(args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Set threads and seed; the training split (cut to ``--limit``), the test split and the data's sha256.
    A missing data set ends the program with the reason and how to fix it."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        x_train, y_train, data_hash = load_training_set(args.dataset, True, args.data_root, args.download)
        x_test, y_test, _ = load_training_set(args.dataset, False, args.data_root, args.download)
    except DatasetUnavailableError as exc:
        sys.exit(f"error: {exc}")
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    return x_train, y_train, x_test, y_test, data_hash


def resume_or_start(args, model, optimizer, n: int, device,
                    extra: dict[str, torch.nn.Module] | None = None) -> tuple[int, list[dict], int, int]:
    """The first epoch to run and the history so far (from ``args.resume`` if given, with the
    modules of ``extra`` restored too), and the iterations per epoch and in all (for the
    learning-rate schedule)."""
    start_epoch, history = 0, []
    if args.resume:
        start_epoch, history = load_checkpoint(args.resume, model, optimizer, device, extra)
        print(f"resumed from {args.resume} after epoch {start_epoch}", file=sys.stderr)
    per_epoch = math.ceil(n / args.batch_size)
    return start_epoch, history, per_epoch, per_epoch * args.epochs


def epoch_order(seed: int, epoch: int, n: int, device) -> tuple[torch.Generator, torch.Tensor]:
    """The generator and sample order of one epoch. They depend on (seed, epoch) only: resuming
    replays exactly what an uninterrupted run would have done."""
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    return gen, torch.randperm(n, generator=gen).to(device)


def train(args: argparse.Namespace) -> dict:
    started = time.time()
    x_train, y_train, x_test, y_test, data_hash = prepare(args)
    device = torch.device(args.device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_test, y_test = x_test.to(device), y_test.to(device)
    ds = get_dataset(args.dataset)
    model = build(args.arch, ds.shape, ds.num_classes).to(device)
    if args.init:
        from trav_gui.engine.models.loading import load_weights

        model.load_state_dict(load_weights(args.init, args.arch))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = L2Step(args.attack_step_size, args.eps)
    curve_x, curve_y = x_test[: args.curve_samples], y_test[: args.curve_samples]

    # The averaged weights are the ones measured and written; without --ema, the model itself.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    extra = {"ema": ema} if ema is not None else None
    final = ema.module if ema is not None else model

    n = len(x_train)
    start_epoch, history, per_epoch, total = resume_or_start(args, model, optimizer, n, device, extra)
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        gen, order = epoch_order(args.seed, epoch, n, device)
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(range(per_epoch), desc=f"{args.kind} epoch {epoch + 1}/{args.epochs}",
                   dynamic_ncols=True, file=sys.stderr)
        for i in bar:
            idx = order[i * args.batch_size: (i + 1) * args.batch_size]
            x, y = random_shift(x_train[idx], args.shift, gen, args.shift_fraction), y_train[idx]
            if args.kind == "robust":
                model.eval()
                model.requires_grad_(False)
                scale = eps_scale_at(args, epoch * per_epoch + i, per_epoch)
                batch_step = step if scale == 1.0 else L2Step(args.attack_step_size * scale, args.eps * scale)
                clean_x = x
                x = pgd(model, x, y, batch_step, args.attack_steps, random_start=True, generator=gen,
                        loss=trades_divergence(model, x) if args.loss == "trades" else None)
                model.requires_grad_(True)
                model.train()
            for group in optimizer.param_groups:
                group["lr"] = lr_at(args, epoch * per_epoch + i, total)
            trades = args.kind == "robust" and args.loss == "trades"
            inputs = (clean_x, x) if trades else (x,)
            moved = weight_perturbation(model, batch_loss(model, args, inputs, y)[1], args.awp) if args.awp else []
            logits, loss = batch_loss(model, args, inputs, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            take_back(moved)  # the gradient was taken at the perturbed weights; step from the real ones
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(y)
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        model.eval()
        final.eval()
        clean = evaluate.clean_accuracy(final, curve_x, curve_y)
        robust = evaluate.pgd_accuracy(final, curve_x, curve_y, eps=args.eval_eps, steps=20, restarts=1,
                                       progress=False)
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / seen, 5),
                        "train_acc": round(correct / seen, 5), "clean_acc": round(clean, 5),
                        "robust_acc": round(robust, 5), "seconds": round(time.time() - t0, 1)})
        print(f"epoch {epoch + 1}: loss {loss_sum / seen:.4f}  train acc {correct / seen:.4f}  "
              f"clean {clean:.4f}  PGD-20 (eps {args.eval_eps}, {len(curve_y)} test) {robust:.4f}",
              file=sys.stderr)
        save_checkpoint(_ckpt_dir(args.out), model, optimizer, epoch + 1, history, args, extra)
        write_curve(args.out.with_suffix(".curve.csv"), history)

    final.eval()
    train_seconds = sum(h["seconds"] for h in history)
    card = {
        "name": args.out.stem,
        "kind": args.kind,
        "dataset": args.dataset,
        "input_shape": list(ds.shape),
        **({"role": "judge"} if args.judge else {}),
        "description": (("the independent judge of realism: never traversed, ensembled or used by a stop rule; "
                         if args.judge else "")
                        + ("adversarially trained with L2 PGD" if args.kind == "robust"
                           else "standard training on clean images")),
        "training": {
            "recipe": ("TRADES (Zhang et al. 2019): clean cross-entropy + beta * KL(clean || adversarial), the "
                       "adversarial point found by L2-PGD on that KL from a random start" if args.loss == "trades"
                       else "Madry et al. 2018 adversarial training: every batch replaced by L2-PGD "
                       "adversarial examples from a random start" if args.kind == "robust"
                       else "cross-entropy on clean images"),
            **({"trades_beta": args.trades_beta} if args.loss == "trades" else {}),
            "eps": args.eps if args.kind == "robust" else None,
            "attack_steps": args.attack_steps if args.kind == "robust" else None,
            **({"curve_eps": args.eval_eps} if args.kind == "robust" and args.eval_eps != args.eps else {}),
            "attack_step_size": args.attack_step_size if args.kind == "robust" else None,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": "Adam",
            "lr": args.lr,
            "lr_schedule": "cosine to 0, per iteration",
            "seed": args.seed,
            "init": args.init,
            "shift_augmentation_px": args.shift,
            **({"shift_fraction": args.shift_fraction} if args.shift and args.shift_fraction < 1 else {}),
            **({"ema_decay": args.ema} if args.ema else {}),
            **({"awp_gamma": args.awp} if args.awp else {}),
            **({"eps_warmup_epochs": args.eps_warmup} if args.eps_warmup else {}),
            "train_samples": n,
            "data_sha256": data_hash,
            "wall_seconds": round(train_seconds, 1),
            "machine": (torch.cuda.get_device_name(device) if device.type == "cuda" else
                        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"),
            "torch": torch.__version__,
            "trav_gui": __version__,
        },
        "learning_curve": history,
    }
    card = save_model(final, args.out, card, args.arch)
    if not args.no_eval:
        evaluate.main([str(args.out), "--write-card", "--device", args.device, "--attack-steps", str(args.eval_attack_steps),
                       *(["--eps", str(args.eval_eps)] if args.kind == "robust" else []),
                       "--restarts", str(args.eval_restarts)]
                      + (["--limit", str(args.eval_limit)] if args.eval_limit else []))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} in {time.time() - started:.0f} s",
          file=sys.stderr)
    return card


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
