"""Train a generative prior (a denoiser) for realistic traversal.

    python -m training.train_prior --kind score --epochs 6 --out resources/priors/score-mnist.safetensors
    python -m training.train_prior --kind dae --sigma 0.3 --out resources/priors/dae-mnist.safetensors

``score``: a noise-conditional U-Net (:class:`trav_gui.engine.models.priors.ScoreUNet`) trained to
predict the noise added to training images at σ drawn log-uniformly from [σ_min, σ_max]
(denoising score matching, Song & Ermon 2019). ``dae``: a denoising autoencoder trained at one
σ to output the clean image. ``--ema DECAY`` writes an exponential moving average of the weights
instead of the last ones (as score models' samplers use, Song & Ermon 2020), ``--clip-grad``
clips each step's gradient norm. A checkpoint is written after every epoch (``--resume`` goes on
from it); the card records the recipe and the test-set denoising error at several σ.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from training.train import (
    epoch_order,
    prepare,
    resume_or_start,
    save_checkpoint,
    write_curve,
)
from trav_gui import __version__
from trav_gui.engine.data.datasets import DEFAULT_DATASET, all_datasets, get_dataset
from trav_gui.engine.models.priors import PRIOR_ARCHITECTURES, save_prior

EVAL_SIGMAS = (0.05, 0.1, 0.2, 0.3, 0.5)
# Per epoch: the training loss and the test denoising error (at --sigma for a dae, 0.2 for a score model).
CURVE_FIELDS = ["epoch", "loss", "denoising_mse", "seconds"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train_prior", description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=sorted(set(PRIOR_ARCHITECTURES) - {"critic"}), required=True,
                   help="a denoiser (a realism critic is trained by python -m training.train_critic)")
    p.add_argument("--dataset", choices=sorted(all_datasets()), default=DEFAULT_DATASET)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--sigma", type=float, default=0.3, help="dae: the one noise level it is trained at")
    p.add_argument("--sigma-min", type=float, default=0.02, help="score: smallest training noise level")
    p.add_argument("--sigma-max", type=float, default=1.0, help="score: largest training noise level")
    p.add_argument("--width", type=int, default=32, help="score: the U-Net's width (channels of its first level)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam, cosine-annealed to 0")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="write the exponential moving average of the weights with this decay (e.g. 0.999); 0: the last weights")
    p.add_argument("--clip-grad", type=float, default=0.0, metavar="NORM",
                   help="clip each step's gradient to this norm; 0: no clipping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--data-root", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--resume", type=Path, default=None, help="a <out>.ckpt folder to continue from")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (tests)")
    p.add_argument("--eval-samples", type=int, default=2000, help="test images for the denoising error")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.out.suffix != ".safetensors":
        p.error("--out must end in .safetensors")
    if args.epochs < 1 or args.batch_size < 1 or args.width < 1 or min(args.sigma, args.sigma_min, args.sigma_max) <= 0:
        p.error("--epochs, --batch-size, --width and the noise levels must be positive")
    if args.sigma_min >= args.sigma_max:
        p.error("--sigma-min must be below --sigma-max")
    if not 0.0 <= args.ema < 1.0 or args.clip_grad < 0:
        p.error("--ema must be in [0, 1) and --clip-grad not negative")
    return args


def _sigmas(args, n: int, generator: torch.Generator) -> torch.Tensor:
    if args.kind == "dae":
        return torch.full((n,), args.sigma)
    lo, hi = math.log(args.sigma_min), math.log(args.sigma_max)
    return torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator))


def loss_of(model, kind: str, x: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """dae: squared error of the clean estimate; score: of the noise estimate (both per pixel)."""
    s = sigma.view(-1, 1, 1, 1)
    clean = model(x + s * noise, sigma)
    if kind == "dae":
        return ((clean - x) ** 2).mean()
    return (((x + s * noise - clean) / s - noise) ** 2).mean()


@torch.no_grad()
def denoising_error(model, x: torch.Tensor, sigma: float, seed: int = 0) -> float:
    """Mean squared error per pixel of the clean estimate of ``x`` noised at ``sigma``
    (the noisy image's own error is sigma²)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g).to(x.device)
    errs = [((model(xb + sigma * nb, sigma) - xb) ** 2).mean().item() * len(xb)
            for xb, nb in zip(x.split(500), noise.split(500))]
    return sum(errs) / len(x)


def train(args: argparse.Namespace) -> dict:
    x_train, _, x_test, _, data_hash = prepare(args)
    device = torch.device(args.device)
    x_train, x_eval = x_train.to(device), x_test[: args.eval_samples].to(device)
    sized = {"width": args.width} if args.kind == "score" else {}
    model = PRIOR_ARCHITECTURES[args.kind](channels=get_dataset(args.dataset).channels, **sized).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    # The averaged weights are the ones evaluated and written; without --ema, the model itself.
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True) if args.ema else None
    extra = {"ema": ema} if ema is not None else None
    n = len(x_train)
    start_epoch, history, per_epoch, total = resume_or_start(args, model, optimizer, n, device, extra)
    final = ema.module if ema is not None else model
    for epoch in range(start_epoch, args.epochs):
        t0 = time.time()
        gen, order = epoch_order(args.seed, epoch, n, device)
        model.train()
        loss_sum = 0.0
        bar = tqdm(range(per_epoch), desc=f"{args.kind} prior epoch {epoch + 1}/{args.epochs}",
                   dynamic_ncols=True, file=sys.stderr)
        for i in bar:
            x = x_train[order[i * args.batch_size: (i + 1) * args.batch_size]]
            sigma = _sigmas(args, len(x), gen).to(device)
            noise = torch.randn(x.shape, generator=gen).to(device)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * (epoch * per_epoch + i) / total))
            loss = loss_of(model, args.kind, x, sigma, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.item()
            bar.set_postfix(loss=f"{loss_sum / (i + 1):.4f}")
        bar.close()
        final.eval()
        err = denoising_error(final, x_eval, args.sigma if args.kind == "dae" else 0.2)
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / per_epoch, 5), "denoising_mse": round(err, 6),
                        "seconds": round(time.time() - t0, 1)})
        print(f"epoch {epoch + 1}: loss {loss_sum / per_epoch:.4f}  test denoising MSE "
              f"{err:.5f}", file=sys.stderr)
        save_checkpoint(args.out.with_name(args.out.name + ".ckpt"), model, optimizer, epoch + 1, history, args, extra)
        write_curve(args.out.with_suffix(".curve.csv"), history, CURVE_FIELDS)
    final.eval()
    evaluation = {f"{s:g}": round(denoising_error(final, x_eval, s), 6) for s in EVAL_SIGMAS}
    card = {
        "name": args.out.stem,
        "prior": args.kind,
        "dataset": args.dataset,
        "description": ("noise-conditional score model (U-Net, denoising score matching)" if args.kind == "score"
                        else f"denoising autoencoder trained at sigma {args.sigma:g}"),
        "sigma": [args.sigma_min, args.sigma_max] if args.kind == "score" else args.sigma,
        **({"width": args.width} if args.kind == "score" and args.width != 32 else {}),
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "optimizer": "Adam", "lr": args.lr,
                     "lr_schedule": "cosine to 0, per iteration", "seed": args.seed, "train_samples": n,
                     **({"ema_decay": args.ema} if args.ema else {}),
                     **({"clip_grad_norm": args.clip_grad} if args.clip_grad else {}),
                     "data_sha256": data_hash, "wall_seconds": round(sum(h["seconds"] for h in history), 1),
                     "torch": torch.__version__, "trav_gui": __version__},
        "evaluation": {"test_samples": len(x_eval),
                       "denoising_mse_per_pixel": evaluation,
                       "note": "mean squared error of the clean estimate per pixel; the noisy input's is sigma^2"},
        "learning_curve": history,
    }
    card = save_prior(final, args.out, card)
    print(f"wrote {args.out}; test denoising MSE by sigma: {evaluation}", file=sys.stderr)
    return card


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
