"""Train a realism critic for a recipe's finish: real images against the recipe's endpoints.

    python -m training.train_critic --recipe realistic --out resources/priors/critic-mnist.safetensors

1. **Endpoints.** The recipe (without a critic of its own) traverses the first ``--train-digits``
   *training* images, each to every other class (200 L2 steps of 0.1, its stop rule and finish);
   its last frames are the critic's fakes. They are the slow part (about 9 min for 1,800 on two
   cores; the training below about 4) and are kept in ``<out>.ckpt/endpoints_*.npz`` in chunks of
   ``--chunk`` starts, so that ``--resume`` goes on where a run stopped, or traverses only the starts
   a run with more ``--train-digits`` adds (refused if the recipe or the chunks differ from the run
   that wrote them; a chunk of other starts is traversed again).
2. **Reals.** As many training images from 20,000 on, with the fakes' target classes. No test
   image is used: the figures measured on test digits never see the critic's data.
3. **The critic** (:class:`~trav_gui.engine.models.priors.RealismCritic`) learns real (logit > 0)
   against fake on 80 % of them with L2 PGD adversarial training at ``--eps`` (7 steps of 2.5·ε/7),
   as the robust classifiers are trained, so that its gradient is perceptually aligned; its card
   records its clean and attacked (PGD-20) accuracy on the other 20 % (split by image: the 9
   endpoints of one start can fall on both sides, so these figures may be optimistic).

With ``--also-retry`` the recipe's retry pull (its ``retry`` settings: for ``realistic``, the stochastic pull of
``realistic-stochastic``), finished without a critic, traverses the same starts and its endpoints are fakes too
(kept in ``<out>.ckpt/retry/``): the endpoints a retry replaces rejected ones with are the critic's to learn as
well. ``--first-digit K`` takes the starts from training image K on (new starts for a critic that goes on
learning), and ``--init NAME`` starts from a critic's weights instead of fresh ones (a fine-tune; ``--lr``
sets the one-cycle schedule's peak, lower for a fine-tune). ``--blur PX`` makes a critic that sees its input
through a fixed Gaussian blur (its card's ``blur``): it can tell shapes only, and a finish with it moves strokes
rather than adding texture.

With ``--also-critic NAME`` (a second round) the recipe's endpoints *finished with that critic* (its
``critic_steps`` and ``critic_step``, or 30 of 0.1) are fakes too, beside those without it, and twice as
many reals are drawn: the new critic learns what a first critic's frames still give away, and is not
fooled by the steps a finish with it takes. Those endpoints are kept in ``<out>.ckpt/with-<NAME>/``.

Written with :func:`~trav_gui.engine.models.priors.save_prior` (``"prior": "critic"``): a recipe
names it as its ``critic``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from trav_gui import __version__
from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.data.datasets import arrays_sha256, get_dataset, load_training_set
from trav_gui.engine.files import atomic_paths, write_bytes_atomic
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.loading import load_recipe, read_recipe, resolve_model_path
from trav_gui.engine.models.priors import RealismCritic, load_prior, save_prior
from trav_gui.engine.models.recipes import Recipe

REALS_FROM = 20_000  # the critic's real images: training images from here on


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train_critic", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="realistic", help="the recipe whose endpoints the critic learns to tell")
    p.add_argument("--train-digits", type=int, default=1600, help="training images traversed to every other class")
    p.add_argument("--first-digit", type=int, default=0, help="the first training image traversed")
    p.add_argument("--also-retry", action="store_true",
                   help="the recipe's retry pull's endpoints (of the same starts) are fakes too")
    p.add_argument("--init", default=None, metavar="CRITIC", help="start from this critic's weights (a fine-tune)")
    p.add_argument("--lr", type=float, default=2e-3, help="the peak of the one-cycle learning rate")
    p.add_argument("--chunk", type=int, default=50, help="starts per saved chunk of endpoints")
    p.add_argument("--eps", type=float, default=1.0, help="the L2 radius of its adversarial training")
    p.add_argument("--blur", type=float, default=0.0, metavar="PX",
                   help="the critic sees its input blurred by a Gaussian of this many pixels: shape, not texture")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    p.add_argument("--also-critic", default=None, metavar="NAME",
                   help="a second round: the recipe's endpoints finished with this critic are fakes too")
    p.add_argument("--resume", action="store_true", help="reuse the endpoint chunks already in <out>.ckpt")
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.train_digits < 2 or args.chunk < 1 or args.epochs < 1 or not 0 <= args.eps <= 10:
        p.error("--train-digits must be at least 2, --chunk and --epochs at least 1, --eps in [0, 10]")
    if not 0 <= args.blur <= 5:
        p.error("--blur must be in [0, 5] pixels")
    if not 0 <= args.first_digit < REALS_FROM or not 0 < args.lr <= 1:
        p.error(f"--first-digit must be in [0, {REALS_FROM}) (the reals start there), --lr in (0, 1]")
    if args.out.suffix != ".safetensors":
        p.error("--out must be a .safetensors file")
    return args


def endpoint_chunk(recipe, images: np.ndarray, targets: np.ndarray, shape) -> np.ndarray:
    """The recipe's last frames from ``images`` (N, C, H, W) to ``targets``."""
    config = TraversalConfig(steps=200, step_size=0.1)
    last = None
    for frame in tqdm(traverse([recipe], images, targets, config, shape=shape), total=config.steps + 1,
                      desc="endpoints", file=sys.stderr, leave=False):
        last = frame.images[0]
    return np.asarray(last, np.float32)


def endpoints(recipe, images: np.ndarray, labels: np.ndarray, classes: int, chunk: int, folder: Path, resume: bool,
              shape, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every start of ``images`` to every other class: (fakes, their targets), chunk by chunk, each
    chunk kept in ``folder``. With ``resume`` a chunk is reused where the folder's stamp says it was
    made by this recipe from these very starts, so a run with more ``--train-digits`` traverses only
    the starts it adds. ``offset``: the index of ``images[0]`` in the training set (it names the chunks)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "endpoints.json"
    key = {"recipe": recipe.recipe.to_dict(), "chunk": chunk}
    made: dict[str, str] = {}  # chunk file -> the SHA-256 of the starts (images, labels) it was made from
    if resume and stamp.is_file():
        old = json.loads(stamp.read_text())
        if {k: old.get(k) for k in key} != key:
            raise SystemExit(f"{folder}: its endpoints were made by another recipe or in other chunks; "
                             "delete the folder or leave out --resume")
        made = old.get("chunks", {})
    fakes, targets = [], []
    for first in range(0, len(images), chunk):
        x, y = images[first:first + chunk], labels[first:first + chunk]
        starts = np.repeat(np.arange(len(x)), classes - 1)
        t = np.array([c for label in y for c in range(classes) if c != label])
        path = folder / f"endpoints_{offset + first}_{offset + first + len(x)}.npz"
        digest = arrays_sha256(x, y)
        if resume and path.is_file() and made.get(path.name) == digest:
            with np.load(path) as f:
                last = f["last"]
        else:
            print(f"starts {offset + first}-{offset + first + len(x) - 1} ({folder.name})", file=sys.stderr, flush=True)
            last = endpoint_chunk(recipe, x[starts], t, shape)
            with atomic_paths(path) as (tmp,), open(tmp, "wb") as f:
                np.savez_compressed(f, last=last)
            made[path.name] = digest
            write_bytes_atomic(stamp, json.dumps({**key, "chunks": made}).encode())
        fakes.append(last)
        targets.append(t)
    return np.concatenate(fakes), np.concatenate(targets)


def matching_reals(images: np.ndarray, labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """As many of ``images`` of each class as ``targets`` holds endpoints of it, in class order."""
    return np.concatenate([images[labels == c][:k] for c, k in zip(*np.unique(targets, return_counts=True))])


def l2_pgd(critic: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 7) -> torch.Tensor:
    """An L2 PGD attack on the critic's real-or-fake loss within ``eps``, pixels kept in [0, 1]."""
    if eps <= 0:
        return x
    alpha = 2.5 * eps / steps
    delta = torch.zeros_like(x)
    view = (-1, *[1] * (x.dim() - 1))
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = nn.functional.binary_cross_entropy_with_logits(critic(x + delta), y)
        g, = torch.autograd.grad(loss, delta)
        delta = delta.detach() + alpha * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(view)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def fit_critic(critic: nn.Module, fake: np.ndarray, real: np.ndarray, eps: float, epochs: int, seed: int,
               lr: float = 2e-3) -> dict:
    """Adversarially train ``critic`` on 80 % of ``fake`` and as many of ``real`` (each (N, C, H, W));
    its held-out figures. The batches' order comes from torch's global generator: seed it, then build
    the critic, for a run that replays."""
    rng = np.random.default_rng(seed)
    n = min(len(fake), len(real))
    x = torch.from_numpy(np.concatenate([fake[rng.choice(len(fake), n, replace=False)],
                                         real[rng.choice(len(real), n, replace=False)]]).astype(np.float32))
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    order = torch.from_numpy(rng.permutation(2 * n))
    cut = int(0.8 * 2 * n)
    tr, te = order[:cut], order[cut:]
    opt = torch.optim.Adam(critic.parameters(), lr=lr / 2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * ((len(tr) + 63) // 64))
    critic.train()
    for epoch in tqdm(range(epochs), desc="critic", file=sys.stderr):
        for b in tr[torch.randperm(len(tr))].split(64):
            loss = nn.functional.binary_cross_entropy_with_logits(critic(l2_pgd(critic, x[b], y[b], eps)), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    critic.eval()
    attacked_x = l2_pgd(critic, x[te], y[te], eps, steps=20)
    with torch.no_grad():
        clean = float(((critic(x[te]) > 0).float() == y[te]).float().mean())
        attacked = float(((critic(attacked_x) > 0).float() == y[te]).float().mean())
    return {"held_out_images": len(te), "accuracy": round(clean, 4), "accuracy_pgd20": round(attacked, 4)}


def without_critic(recipe: Recipe) -> Recipe:
    """``recipe`` finished without a critic (its settings as a recipe that never had one)."""
    return Recipe.from_dict(replace(recipe, critic=None, critic_pull=0.0).to_dict())  # its pull uses no critic either


def train(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    recipe_file = resolve_model_path(args.recipe)
    # The critic learns the recipe's first pull, finished without a critic: its retry (a second pull where
    # its critic rejects) is taken off with the critic it needs.
    whole = read_recipe(recipe_file)
    original = whole.first_pull()
    settings = without_critic(original)
    recipe = load_recipe(settings)
    ds = get_dataset(recipe.dataset)
    images, labels, digest = load_training_set(ds.name, train=True, root=args.data_root)
    first, last = args.first_digit, args.first_digit + args.train_digits
    if last > REALS_FROM:
        raise SystemExit(f"--first-digit {first} with --train-digits {args.train_digits} reaches training image "
                         f"{REALS_FROM}, where the reals start")
    starts, start_labels = images[first:last].numpy(), labels[first:last].numpy()
    folder = args.out.with_suffix(".safetensors.ckpt")
    finished = None
    if args.also_critic:  # checked before the slow part
        try:
            finished = load_recipe(Recipe.from_dict({**original.to_dict(), "critic": args.also_critic}))
        except (ModelLoadError, PriorLoadError, RecipeError) as exc:
            raise SystemExit(f"error: --also-critic {args.also_critic}: {exc}") from None
    retry = None
    if args.also_retry:
        pull = whole.retry_recipe()
        if pull is None:
            raise SystemExit(f"error: --also-retry: the recipe {args.recipe} has no retry")
        retry = load_recipe(without_critic(pull))
    init, init_rebuild = None, []
    if args.init:
        try:
            init, init_card = load_prior(args.init)
        except (ModelLoadError, PriorLoadError) as exc:
            raise SystemExit(f"error: --init {args.init}: {exc}") from None
        if not isinstance(init, RealismCritic):
            raise SystemExit(f"error: --init {args.init}: not a realism critic")
        init_rebuild = list(init_card.to_json().get("rebuild", []))  # a fine-tune is rebuilt after what it started from
    fakes, targets = endpoints(recipe, starts, start_labels, ds.num_classes, args.chunk, folder, args.resume, ds.shape,
                               first)
    if retry is not None:
        more, more_targets = endpoints(retry, starts, start_labels, ds.num_classes, args.chunk, folder / "retry",
                                       args.resume, ds.shape, first)
        fakes, targets = np.concatenate([fakes, more]), np.concatenate([targets, more_targets])
    if finished is not None:
        more, more_targets = endpoints(finished, starts, start_labels, ds.num_classes, args.chunk,
                                       folder / f"with-{Path(args.also_critic).stem}", args.resume, ds.shape, first)
        fakes, targets = np.concatenate([fakes, more]), np.concatenate([targets, more_targets])
    real = matching_reals(images[REALS_FROM:].numpy(), labels[REALS_FROM:].numpy(), targets)
    if len(real) < len(fakes):
        raise SystemExit(f"{ds.title} has too few training images from {REALS_FROM} on to match the "
                         f"{len(fakes)} endpoints class by class ({len(real)}); use fewer --train-digits")
    torch.manual_seed(args.seed)
    critic = RealismCritic(channels=ds.channels, size=ds.size, blur=args.blur)
    if init is not None:
        try:
            critic.load_state_dict(init.state_dict())
        except RuntimeError:
            raise SystemExit(f"error: --init {args.init}: its shape is not {ds.title}'s") from None
        critic.requires_grad_(True)
    held_out = fit_critic(critic, fakes.reshape(-1, *ds.shape), real.reshape(-1, *ds.shape), args.eps, args.epochs,
                          args.seed, args.lr)
    print(f"critic: held-out accuracy {100 * held_out['accuracy']:.1f} %, under PGD-20 at eps {args.eps:g} "
          f"{100 * held_out['accuracy_pgd20']:.1f} %", flush=True)
    card = {"name": args.out.stem, "prior": "critic", "dataset": ds.name,
            **({"blur": args.blur} if args.blur else {}),
            "description": f"realism critic: real {ds.title} images against the {recipe_file.stem} recipe's endpoints "
                           f"(L2 PGD adversarial training at eps {args.eps:g}"
                           + (f"; it sees them blurred by {args.blur:g} px" if args.blur else "") + ")",
            "critic_of": {"recipe": recipe_file.stem, "settings": settings.to_dict(),
                          "train_digits": args.train_digits, "endpoints": len(fakes), "reals_from": REALS_FROM,
                          **({"first_digit": first} if first else {}),
                          **({"also_retry": retry.recipe.to_dict()} if retry is not None else {}),
                          **({"also_critic": args.also_critic} if args.also_critic else {})},
            "training": {"eps": args.eps, "attack_steps": 7, "epochs": args.epochs, "batch_size": 64,
                         "optimizer": "Adam", "lr": f"one-cycle to {args.lr:g}", "seed": args.seed,
                         **({"init": args.init} if args.init else {}), "data_sha256": digest,
                         "wall_seconds": round(time.time() - t0, 1), "torch": torch.__version__,
                         "trav_gui": __version__},
            "held_out": held_out,
            "rebuild": [*init_rebuild,
                        (f"python -m training.train_critic --recipe {args.recipe} --train-digits {args.train_digits} "
                         f"--eps {args.eps:g} --epochs {args.epochs} --seed {args.seed} --out {args.out}"
                         + (f" --first-digit {first}" if first else "") + (" --also-retry" if retry is not None else "")
                         + (f" --blur {args.blur:g}" if args.blur else "")
                         + (f" --init {args.init} --lr {args.lr:g}" if args.init else "")
                         + (f" --also-critic {args.also_critic}" if args.also_critic else ""))]}
    save_prior(critic, args.out, card)
    print(f"wrote {args.out}", file=sys.stderr)
    return card


def main(argv: list[str] | None = None) -> None:
    train(parse_args(argv))


if __name__ == "__main__":
    main()
