"""Speed of the traversal engine, as ratios against baselines run in the same process.

    python benchmarks/bench_speed.py [--models robust standard] [--steps 100] [--repeats 5]

Prints, for a single image and for a batch of 90 (the gallery's size), with two models:
- the engine's time per step, and its ratio to a bare forward + backward loop of the same
  models on the same input (the engine's overhead; target <= 1.05);
- the engine's time per step against torchattacks.PGDL2 (targeted, same model, batch and
  steps; target <= 0.9 on 90 images, <= 1.1 on one), one model at a time as PGDL2 takes one;
- the gallery (``run_gallery``: 90 traversals x both models, ``--gallery-steps`` steps) in
  seconds, against the bare compute of its 90 x steps x 2 forward + backward passes
  (target <= 1.1);
- other image worlds (``--shapes 3x28x28 3x32x32``): the engine's time per step on colour
  images of each shape against the bare loop (target <= 1.05), with two SmallCNNs built for that
  shape (seeded random weights: the cost of a step does not depend on what the weights learnt).
  These are timed step by step, alternately (see ``interleaved``): a step at batch 1 takes a
  few milliseconds, and this machine's speed drifts by more than 5 % between whole runs.
``--only-shapes`` measures just those.

``--recipe realistic`` (alone) times the recipe against ``robust`` on the gallery's 90 traversals
in one batch, ``--gallery-steps`` steps (target <= 3.0 per traversal, issue 23), with frozen
trajectories skipped (the engine's way) and computed every step (before issue 23), alternately.
Each comparison times its two contenders alternately (A, B, A, B, ...) after a warm-up of
each, so that a change of machine load hits both; times are medians, and each ratio is the
median of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from trav_gui.engine.core.objectives import logprob
from trav_gui.engine.core.traversal import MAX_STEPS, TraversalConfig, traverse
from trav_gui.engine.data.datasets import test_digits
from trav_gui.engine.models.architectures import build
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.output.gallery import gallery_batch, run_gallery


def paired(fa, fb, repeats: int) -> tuple[float, float, float]:
    """(median time of fa, median time of fb, median of the ratios fa/fb), timed alternately."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), statistics.median(a / b for a, b in zip(ta, tb))


def engine_run(models, x0, targets, steps, shape=(1, 28, 28)):
    def run():
        for _ in traverse(models, x0, targets, TraversalConfig(steps=steps - 1, step_size=0.1), shape=shape):
            pass
    return run


def bare_steps(models, x0, targets):
    """What a step costs at the least: forward and backward of each model, an L2 step, clip;
    a generator that takes one step per ``next``."""
    x_start = torch.from_numpy(x0)
    x_start = x_start[:, None] if x_start.dim() == 3 else x_start
    t = torch.as_tensor(targets)
    xs = [x_start.clone() for _ in models]
    while True:
        for i, model in enumerate(models):
            x = xs[i].requires_grad_(True)
            (g,) = torch.autograd.grad(logprob(model(x), t).sum(), x)
            n = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            xs[i] = (x.detach() + 0.1 * g / n).clamp_(0, 1)
        yield


def bare_run(models, x0, targets, steps):
    def run():
        for _, _ in zip(range(steps), bare_steps(models, x0, targets)):
            pass
    return run


def interleaved(new_a, new_b, steps: int, repeats: int) -> tuple[float, float, float, float, float]:
    """Two step generators timed step by step alternately (a, b, a, b, ...), so that a change of
    machine load within a few milliseconds hits both: ``repeats`` fresh pairs of ``steps``
    steps each, after 5 warm-up steps. Returns (median seconds per step of a, of b, median of
    the per-pair ratios, its lower and upper quartile)."""
    ta, tb = [], []
    for _ in range(repeats):
        a, b = new_a(), new_b()
        for _ in range(5):
            next(a)
            next(b)
        sa = sb = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            next(a)
            t1 = time.perf_counter()
            next(b)
            t2 = time.perf_counter()
            sa += t1 - t0
            sb += t2 - t1
        ta.append(sa / steps)
        tb.append(sb / steps)
    ratios = [x / y for x, y in zip(ta, tb)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), q1, q3


def torchattacks_run(model, x0, targets, steps):
    import torchattacks

    attack = torchattacks.PGDL2(model, eps=1e6, alpha=0.1, steps=steps, random_start=False)
    attack.set_mode_targeted_by_label(quiet=True)
    x = torch.from_numpy(x0)[:, None]
    t = torch.as_tensor(targets)
    return lambda: attack(x, t)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["robust", "standard"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gallery-steps", type=int, default=200)
    p.add_argument("--shapes", nargs="*", default=["3x28x28", "3x32x32"],
                   help="image shapes CxHxW to time the engine on (default: 3x28x28 3x32x32)")
    p.add_argument("--only-shapes", action="store_true", help="time only the --shapes worlds")
    p.add_argument("--batches", nargs="*", type=int, default=[1, 90],
                   help="batch sizes of the --shapes timings (default: 1 90)")
    p.add_argument("--recipe", default=None, help="time this recipe against robust on 90 traversals (alone)")
    p.add_argument("--device", default="cpu", help='with --recipe: where the recipe and robust run, e.g. "cuda"')
    args = p.parse_args(argv)
    torch.manual_seed(0)
    if args.only_shapes:
        return shapes(args)
    if args.recipe:
        return recipe_ratio(args)
    models = [load_model(m) for m in args.models]
    images, labels = test_digits()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, models {args.models}, "
          f"{args.steps} steps, median of {args.repeats}")
    for n in (1, 90):
        x0 = (images[:n].astype(np.float32) / 255.0)
        targets = (labels[:n].astype(np.int64) + 1) % 10
        engine, bare, ratio = paired(engine_run(models, x0, targets, args.steps),
                                     bare_run(models, x0, targets, args.steps), args.repeats)
        print(f"batch {n:>2}, {len(models)} models: engine {1000 * engine / args.steps:.3f} ms/step, bare "
              f"fwd+bwd {1000 * bare / args.steps:.3f} ms/step, ratio {ratio:.3f} (target <= 1.05)")
        for name, model in zip(args.models, models):
            one, ta, ratio = paired(engine_run([model], x0, targets, args.steps),
                                    torchattacks_run(model, x0, targets, args.steps), args.repeats)
            target = 0.9 if n > 1 else 1.1
            print(f"batch {n:>2}, {name}: engine {1000 * one / args.steps:.3f} ms/step, "
                  f"torchattacks.PGDL2 {1000 * ta / args.steps:.3f} ms/step, ratio {ratio:.3f} "
                  f"(target <= {target})")

    # The gallery: its 90 (start, target) pairs, timed as a whole against the bare loop.
    _, x0, targets = gallery_batch()
    config = TraversalConfig(steps=args.gallery_steps, step_size=0.1)
    gallery, bare, ratio = paired(lambda: run_gallery(models, args.models, config),
                                  bare_run(models, x0, targets, args.gallery_steps), max(1, args.repeats // 2))
    print(f"gallery, 90 traversals x {len(models)} models x {args.gallery_steps} steps: {gallery:.2f} s, "
          f"bare fwd+bwd {bare:.2f} s, ratio {ratio:.3f} (target <= 1.1)")
    shapes(args)


def recipe_ratio(args) -> None:
    """The recipe against robust, 90 traversals in one batch, frozen trajectories skipped or not."""
    from trav_gui.engine.core import traversal as engine

    _, x0, targets = gallery_batch()
    recipe, robust = load_model(args.recipe, device=args.device), load_model("robust", device=args.device)
    steps = args.gallery_steps + 1

    def skipping(run, skip: bool):
        def timed():
            engine.SKIP_FROZEN = skip
            try:
                run()
            finally:
                engine.SKIP_FROZEN = True
        return timed

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"{len(targets)} traversals in one batch, "
          f"{args.gallery_steps} steps, median of {args.repeats}")
    r_recipe, r_robust = engine_run([recipe], x0, targets, steps), engine_run([robust], x0, targets, steps)
    skip, every, gain = paired(skipping(r_recipe, True), skipping(r_recipe, False), args.repeats)
    print(f"{args.recipe}: {skip:.2f} s skipping frozen trajectories, {every:.2f} s computing every one, "
          f"ratio {gain:.3f}")
    mine, base, ratio = paired(skipping(r_recipe, True), r_robust, args.repeats)
    print(f"{args.recipe} {mine:.2f} s against robust {base:.2f} s: ratio {ratio:.2f} (target <= 3.0); "
          f"computing every trajectory it was {every / base:.2f}")


def shapes(args) -> None:
    """The engine against the bare loop on colour images of each of ``args.shapes``."""
    for text in args.shapes:
        shape = tuple(int(v) for v in text.lower().split("x"))
        torch.manual_seed(0)
        models = [build("small_cnn", shape, 10).eval().requires_grad_(False) for _ in range(2)]
        rng = np.random.default_rng(0)
        for n in args.batches:
            x0 = (rng.random((n, *shape)) * (rng.random((n, 1, *shape[1:])) > 0.8)).astype(np.float32)
            targets = rng.integers(0, 10, n)
            config = TraversalConfig(steps=MAX_STEPS, step_size=0.1)
            engine, bare, ratio, q1, q3 = interleaved(
                lambda: traverse(models, x0, targets, config, shape=shape),
                lambda: bare_steps(models, x0, targets), args.steps, args.repeats)
            print(f"{text}, batch {n:>2}, 2 models: engine {1000 * engine:.3f} ms/step, bare fwd+bwd "
                  f"{1000 * bare:.3f} ms/step, ratio {ratio:.3f} (quartiles {q1:.3f}-{q3:.3f}; target <= 1.05)")

if __name__ == "__main__":
    main()
