"""Traversal: gradient steps on input pixels toward a target class, as a plain generator.

Several models advance in lock-step from the same start image(s) toward the same target;
each step costs one forward and one backward pass per model, and the models' images move
in one batched update. After every step the generator yields a frozen :class:`Frame` holding numpy
copies, so a consumer (the GUI's worker thread, the command line, a benchmark) can keep,
plot or export frames while the run goes on, and can stop or pause between any two steps.

Example
-------
>>> models = [load_model("robust"), load_model("standard")]
>>> for frame in traverse(models, x0, target=0, config=TraversalConfig(steps=200)):
...     print(frame.step, frame.probs[:, 0, 0])     # P(target) per model, first image
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import nn

from trav_gui.engine.core import defaults
from trav_gui.engine.core.objectives import OBJECTIVES, get_objective
from trav_gui.engine.core.steps import Step, make_step, per_sample_norm

__all__ = ["DEFAULTS", "DEFAULT_PGD_EPS", "DEFAULT_STOP_AT_PROB", "Frame", "NonFiniteOutputError", "OwnSteps",
           "OwnStepsRun", "TraversalConfig", "as_batch", "stack_frames", "traverse"]

MAX_STEPS = 100_000
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes


class NonFiniteOutputError(RuntimeError):
    """A model returned NaN or inf; the frames before ``step`` are valid."""

    def __init__(self, step: int, model_index: int) -> None:
        super().__init__(f"model {model_index} returned NaN or inf at step {step}; the run stopped there")
        self.step = step
        self.model_index = model_index


class OwnStepsRun(Protocol):
    """One traversal's state of a model that takes its own steps (see :class:`OwnSteps`)."""

    stops: bool
    """True when it may freeze trajectories on its own (a stop rule)."""

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of this run's images ``x`` (N, C, H, W): the model as this run sees them; ``rows``
        (indices into the run's N trajectories) says which ones ``x`` holds when not all."""

    def advance(self, step: Step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """The next images (N, C, H, W) after step ``t``, from ``x``, the start ``x0`` and the
        gradient; with ``rows``, only those trajectories move (the others are frozen)."""

    def done(self, p_target: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) bool: the trajectories it freezes after step ``t``, given its own p(target) (N,)."""


@runtime_checkable
class OwnSteps(Protocol):
    """A model that takes its own steps (a recipe, :class:`~trav_gui.engine.models.recipes.Guided`):
    :func:`traverse` asks it for an :class:`OwnStepsRun` and lets that move its images."""

    def start(self, n: int, device: torch.device, seed: int = 0, x0: torch.Tensor | None = None,
              targets: torch.Tensor | None = None, steps: int | None = None) -> OwnStepsRun:
        """A run of ``n`` images on ``device``; ``seed`` seeds any randomness of its steps; ``x0``
        (N, C, H, W) are the start images, ``targets`` (N,) their target classes and ``steps`` the
        most steps the run takes (its last frame is at that step)."""


def _own_steps(models: Sequence[nn.Module]) -> list[OwnSteps | None]:
    """Each model's :class:`OwnSteps` (None for a plain classifier). A model that wraps one deeper
    down is refused: traversed as a plain classifier, the recipe's steps would be silently lost."""
    out: list[OwnSteps | None] = []
    for i, model in enumerate(models):
        if isinstance(model, OwnSteps):
            out.append(model)
            continue
        inner = next((type(m).__name__ for m in model.modules() if isinstance(m, OwnSteps)), None)
        if inner is not None:
            raise ValueError(f"model {i} ({type(model).__name__}) wraps a {inner}, which takes its own steps; "
                             "traverse the recipe itself, or its recipe's steps would be lost")
        out.append(None)
    return out


@dataclass(frozen=True)
class TraversalConfig:
    """Settings of one traversal.

    Parameters
    ----------
    steps : int in [1, 100000], the most steps to take (frames are ``steps + 1`` at most).
    step_size : float in (0, 100], the length of one step in ``norm`` (pixel units, [0, 1]
        scale).
    norm : ``"l2"`` (normalized gradient) or ``"linf"`` (sign of the gradient).
    eps : None for unconstrained traversal, or the radius in (0, 1000] of the ball around the
        start that every frame is projected onto (the "adversarial example" variant, as in PGD).
    objective : ``"logprob"`` (target log-probability), ``"logit"`` or ``"margin"``.
    random_start : start from a random point of the eps-ball (needs ``eps``).
    stop_at_prob : None, or a probability in (0, 1]: a trajectory freezes once the target's
        probability reaches it, and the run ends when all have.
    seed : int in [0, 2**63 - 1], seeds the random start; runs with the same seed are identical.

    Raises
    ------
    ValueError : for any setting of the wrong type or out of its range (NaN and inf included),
        naming the setting. Nothing is clamped silently.
    """

    steps: int = defaults.STEPS
    step_size: float = defaults.STEP_SIZE
    norm: str = defaults.NORM
    eps: float | None = None
    objective: str = defaults.OBJECTIVE
    random_start: bool = False
    stop_at_prob: float | None = None
    seed: int = defaults.SEED

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)):
            raise ValueError(f"steps must be an integer, got {self.steps!r}")
        if not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not isinstance(self.objective, str) or self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; use one of {sorted(OBJECTIVES)}")
        if not isinstance(self.norm, str):
            raise ValueError(f"norm must be 'l2' or 'linf', got {self.norm!r}")
        if self.stop_at_prob is not None and (
                not isinstance(self.stop_at_prob, (int, float)) or isinstance(self.stop_at_prob, bool)
                or not 0 < self.stop_at_prob <= 1):
            raise ValueError(f"stop_at_prob must be in (0, 1], got {self.stop_at_prob!r}")
        if not isinstance(self.random_start, (bool, np.bool_)):
            raise ValueError(f"random_start must be true or false, got {self.random_start!r}")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                or not 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {self.seed!r}")
        if self.random_start and self.eps is None:
            raise ValueError("random_start needs eps (a ball to start in)")
        self.make_step()  # validates norm, step_size and eps

    def make_step(self) -> Step:
        return make_step(self.norm, self.step_size, self.eps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TraversalConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown traversal settings: {sorted(unknown)}")
        return cls(**data)


# The default settings: what the app opens with and the command line's defaults.
DEFAULTS = TraversalConfig()
# The radius offered when PGD mode is switched on (DEFAULTS has no ball): the robust model's
# training radius.
DEFAULT_PGD_EPS = 2.0
# The probability offered when stopping at a probability is switched on (DEFAULTS never stops).
DEFAULT_STOP_AT_PROB = 0.99


def _frozen(a: torch.Tensor) -> np.ndarray:
    out = a.detach().cpu().numpy().copy()
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Frame:
    """The state after ``step`` steps (step 0 is the start), for M models and N images.

    Attributes
    ----------
    step : int
    images : (M, N, H, W) float32 in [0, 1] for grey images (as always), (M, N, 3, H, W) for
        colour ones: the current image of each trajectory.
    probs : (M, N, K) float32, class probabilities of each model for its image.
    l2, linf : (M, N) float32, ‖δ‖₂ and ‖δ‖∞ of δ = x − x₀.
    objective : (M, N) float32, the objective's value at the image.
    grad_norm : (M, N) float32, ‖∇ₓ objective‖₂ at the image; 0 means the step left it unchanged.
    done : (M, N) bool, trajectories frozen by ``stop_at_prob``.

    All arrays are read-only copies, safe to keep and hand to other threads.
    """

    step: int
    images: np.ndarray
    probs: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    objective: np.ndarray
    grad_norm: np.ndarray
    done: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """(M, N) int, the predicted class of each trajectory."""
        return self.probs.argmax(-1)


MNIST_SHAPE = (1, 28, 28)


def as_batch(x0: np.ndarray | torch.Tensor, shape: tuple[int, int, int] | None = MNIST_SHAPE) -> torch.Tensor:
    """Images as ``(N, C, H, W)`` float32.

    ``shape`` is the data set's image shape (C, H, W); the images may come as ``(C, H, W)`` (one
    image), ``(N, C, H, W)``, and for grey sets also as ``(H, W)`` or ``(N, H, W)``. With
    ``shape=None`` any size is taken: ``(H, W)`` and ``(N, H, W)`` as grey, 4-D with 1 or 3
    channels as it is.

    Raises ValueError for other shapes, non-finite values, or pixels outside [0, 1].
    """
    # a copy of a read-only array (a run record's start image): torch cannot share read-only memory
    x = x0 if isinstance(x0, torch.Tensor) else torch.as_tensor(np.array(x0, copy=not np.asarray(x0).flags.writeable))
    x = x.detach().to(torch.float32)
    if shape is not None and x.dim() == 3 and tuple(x.shape) == tuple(shape):
        x = x[None]
    elif x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[:, None]
    if shape is None:
        ok = x.dim() == 4 and x.shape[1] in (1, 3) and min(x.shape[2:]) > 0
    else:
        ok = x.dim() == 4 and tuple(x.shape[1:]) == tuple(shape)
    if not ok or x.shape[0] == 0:
        c, h, w = shape or ("C", "H", "W")
        accepted = (f"({h}, {w}), (N, {h}, {w}), ({c}, {h}, {w}) or (N, {c}, {h}, {w})" if c == 1
                    else f"({c}, {h}, {w}) or (N, {c}, {h}, {w})")
        raise ValueError(f"images must be {accepted}; got {tuple(np.shape(x0))}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or inf")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"pixels must lie in [0, 1]; got [{x.min():.3g}, {x.max():.3g}]")
    return x


def _as_targets(target: int | Sequence[int] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
    if t.dim() == 0:
        t = t.expand(n)
    if t.shape != (n,) or t.is_floating_point():
        raise ValueError(f"target must be an int or {n} ints, got {target!r}")
    if (t < 0).any():
        raise ValueError(f"target classes must be 0 or more, got {target!r}")
    return t.to(torch.int64)


def _check_targets(targets: torch.Tensor, num_classes: int) -> None:
    """The targets are classes of models with ``num_classes`` outputs."""
    if int(targets.max()) >= num_classes:
        raise ValueError(f"target classes must be in 0..{num_classes - 1}, got {sorted(set(targets.tolist()))}")


# Small batches: one autograd call through all models saves per-call overhead (a single
# image with two models: 2 % above a bare forward + backward loop, against 11 % with a call
# per model). Large batches: a call per model is faster, because the joint graph's backward
# costs more (90 images: 8 % above bare, against 0 %). Measured with benchmarks/bench_speed.py;
# docs/BENCHMARKS.md ("Speed in colour and at 32×32") has the step-by-step figures.
JOINT_AUTOGRAD_MAX_BATCH = 8
# Batches on the per-model path compute only the trajectories still moving (see traverse);
# tests switch it off to compare with computing every trajectory at every step.
SKIP_FROZEN = True


def _forward_backward(models, x, targets, flat_targets, objective_fn, t: int, joint: bool,
                      active: torch.Tensor | None = None, previous=None):
    """Logits (M, N, K), objective values (M, N) and input gradients (M, N, C, H, W).

    ``models``: M callables ``(x (n, C, H, W), rows) -> logits (n, K)``, ``rows`` the indices of
    the trajectories ``x`` holds (None: all). ``flat_targets`` is ``targets`` repeated for each
    model (M * N,), made once per run. ``active`` (M, N) bool (per-model path only): compute only
    these trajectories and take the others from ``previous`` (the last step's three tensors;
    a frozen trajectory's image, hence its outputs, did not change)."""
    if joint:
        # A leaf per model: the gradients come back without a backward through indexing.
        xs = [x[i].detach().requires_grad_(True) for i in range(len(models))]
        with torch.enable_grad():
            logits = torch.stack([model(xi, None) for model, xi in zip(models, xs)])
            _check_finite(logits, t)
            if t == 0:
                _check_targets(targets, logits.shape[-1])
            values = objective_fn(logits.flatten(0, 1), flat_targets)
            grads = torch.autograd.grad(values.sum(), xs)
        return logits.detach(), values.detach().view(len(models), -1), torch.stack(grads)
    logit_list, value_list, grad_list = [], [], []
    for i, model in enumerate(models):
        rows = None
        if active is not None and not bool(active[i].all()):
            rows = active[i].nonzero().squeeze(1)
            if len(rows) == 0:  # every trajectory of this model is frozen
                logit_list.append(previous[0][i])
                value_list.append(previous[1][i])
                grad_list.append(previous[2][i])
                continue
        xi = (x[i] if rows is None else x[i][rows]).detach().requires_grad_(True)
        with torch.enable_grad():
            logits_i = model(xi, rows)
            _check_finite(logits_i[None], t, first=i)
            if t == 0:
                _check_targets(targets, logits_i.shape[-1])
            values_i = objective_fn(logits_i, targets if rows is None else targets[rows])
            (grad_i,) = torch.autograd.grad(values_i.sum(), xi)
        logits_i, values_i = logits_i.detach(), values_i.detach()
        if rows is not None:  # the frozen ones as they were
            logits_i = previous[0][i].index_copy(0, rows, logits_i)
            values_i = previous[1][i].index_copy(0, rows, values_i)
            grad_i = previous[2][i].index_copy(0, rows, grad_i)
        logit_list.append(logits_i)
        value_list.append(values_i)
        grad_list.append(grad_i)
    return torch.stack(logit_list), torch.stack(value_list), torch.stack(grad_list)


def _rows_ignored(model: nn.Module):
    """A plain model as the loop calls it, ``(x, rows) -> logits``: it needs not know which rows."""
    return lambda x, rows=None: model(x)


def _check_finite(logits: torch.Tensor, t: int, first: int = 0) -> None:
    """Raise NonFiniteOutputError naming the first model whose logits (M, N, K) are not finite."""
    if not bool(torch.isfinite(logits).all()):
        bad = ~torch.isfinite(logits).flatten(1).all(dim=1)
        raise NonFiniteOutputError(t, first + int(bad.nonzero()[0]))


def traverse(
    models: Sequence[nn.Module],
    x0: np.ndarray | torch.Tensor,
    target: int | Sequence[int] | np.ndarray | torch.Tensor,
    config: TraversalConfig = TraversalConfig(),
    shape: tuple[int, int, int] | None = MNIST_SHAPE,
) -> Iterator[Frame]:
    """Climb ``config.objective`` of ``target`` on the input pixels, for each model in lock-step.

    Parameters
    ----------
    models : M classifiers in eval mode, mapping (N, C, H, W) in [0, 1] to logits (N, K),
        all on one device; the images go to that device.
    x0 : the start image(s), see :func:`as_batch`.
    target : one class for all images, or one per image, in 0..K-1.
    config : :class:`TraversalConfig`.
    shape : the data set's image shape (C, H, W) (default MNIST's), or None to take the
        images' own (see :func:`as_batch`).

    Yields
    ------
    Frame for step 0 (the start, or the random start) up to ``config.steps``, fewer if every
    trajectory reaches ``config.stop_at_prob``.

    Raises
    ------
    NonFiniteOutputError : a model returned NaN or inf; the frames yielded so far are valid.
    """
    models = list(models)
    if not models:
        raise ValueError("traverse needs at least one model")
    start = as_batch(x0, shape)
    n, m = start.shape[0], len(models)
    grey = start.shape[1] == 1
    device = next(iter(models[0].parameters()), torch.empty(0)).device
    start = start.to(device)
    targets = _as_targets(target, n).to(device)
    step = config.make_step()
    objective_fn = get_objective(config.objective)
    generator = torch.Generator().manual_seed(int(config.seed))

    # One (M, N, C, H, W) tensor holds every trajectory, so the step is a single update.
    x0s = start.expand(m, *start.shape).contiguous()
    flat_x0 = x0s.flatten(0, 1)
    x = step.random_start(flat_x0, generator).view_as(x0s) if config.random_start else x0s.clone()
    done = torch.zeros(m, n, dtype=torch.bool, device=device)
    # Recipes take their own steps and may stop on their own.
    guided = {i: own.start(n, device, config.seed, x0=start, targets=targets, steps=config.steps)
              for i, own in enumerate(_own_steps(models)) if own is not None}
    forwards = [guided[i].forward if i in guided else _rows_ignored(model) for i, model in enumerate(models)]
    stops = config.stop_at_prob is not None or any(run.stops for run in guided.values())
    # Without a stop rule nothing is ever done: one shared read-only array serves every frame.
    never_done = _frozen(done) if not stops else None

    joint = n <= JOINT_AUTOGRAD_MAX_BATCH
    # Frozen trajectories are not computed again (a batch, where trajectories stop one by one):
    # their image did not change, so neither did their outputs; the prior skips them too.
    skip_frozen = SKIP_FROZEN and stops and not joint
    flat_targets = targets.repeat(m)
    previous = None
    for t in range(config.steps + 1):
        active = ~done if skip_frozen and bool(done.any()) else None
        logits, values, grad = _forward_backward(forwards, x, targets, flat_targets, objective_fn, t, joint,
                                                 active, previous)
        previous = (logits, values, grad) if skip_frozen else None
        k = logits.shape[-1]
        probs = torch.softmax(logits, dim=-1)
        delta = (x - x0s).flatten(0, 1)
        p_target = probs.gather(2, targets.expand(m, n)[..., None]).squeeze(2)
        if config.stop_at_prob is not None:
            done |= p_target >= config.stop_at_prob
        for i, run in guided.items():
            done[i] |= run.done(p_target[i], t)
        # Every per-trajectory number in one tensor: one copy to numpy instead of five.
        stats = _frozen(torch.cat([
            probs,
            per_sample_norm(delta, 2).view(m, n, 1),
            per_sample_norm(delta, float("inf")).view(m, n, 1),
            values.view(m, n, 1),
            per_sample_norm(grad.flatten(0, 1), 2).view(m, n, 1),
        ], dim=2))
        yield Frame(
            step=t,
            images=_frozen(x[:, :, 0] if grey else x),
            probs=stats[..., :k],
            l2=stats[..., k],
            linf=stats[..., k + 1],
            objective=stats[..., k + 2],
            grad_norm=stats[..., k + 3],
            done=never_done if never_done is not None else _frozen(done),
        )
        if t == config.steps or (never_done is None and bool(done.all())):
            return
        moved = step.advance(x.flatten(0, 1), flat_x0, grad.flatten(0, 1)).view_as(x)
        for i, run in guided.items():
            if skip_frozen and bool(done[i].any()):
                rows = (~done[i]).nonzero().squeeze(1)
                moved[i] = run.advance(step, x[i], x0s[i], grad[i], t, rows) if len(rows) else x[i]
            else:
                moved[i] = run.advance(step, x[i], x0s[i], grad[i], t)
        x = moved if never_done is not None else torch.where(done[..., None, None, None], x, moved)


def stack_frames(frames: Sequence[Frame]) -> dict[str, np.ndarray]:
    """Stack frames into arrays with a leading step axis: ``images`` (T, M, N, H, W) (colour:
    (T, M, N, 3, H, W)), etc."""
    if not frames:
        raise ValueError("no frames to stack")
    names = ["images", "probs", "l2", "linf", "objective", "grad_norm", "done"]
    out = {name: np.stack([getattr(f, name) for f in frames]) for name in names}
    out["step"] = np.array([f.step for f in frames])
    return out
