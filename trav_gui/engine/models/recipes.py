"""Recipes: a classifier or an ensemble, a generative prior, a step schedule and a stop rule,
traversed as if they were one model.

A recipe is a small JSON file (``<name>.recipe``, beside its card ``<name>.json`` in a models
folder, so that it is listed, chosen and recorded like a model)::

    {"models": ["robust"], "prior": "score-mnist", "prior_weight": 0.2,
     "sigma_max": 0.3, "sigma_min": 0.05, "anneal_steps": 100,
     "step_decay": 1.0, "stop": "confident", "confident_prob": 0.9}

:func:`~trav_gui.engine.models.loading.load_recipe` turns it into a :class:`Guided` module. Its ``forward`` is the
classifier's (an :class:`Ensemble` for several models), so everything that reads
probabilities works unchanged; :func:`~trav_gui.engine.core.traversal.traverse` sees that it is
guided and lets it take its own steps:

    x ← clip(x + α_t·g/‖g‖₂ + λ·(D(x, σ_t) − x), 0, 1)

with α_t = α·scale·decay^t (α: the run's step size), σ_t annealed geometrically from σ_max to σ_min
over ``anneal_steps`` and held there, and λ the prior's weight (see
:mod:`trav_gui.engine.models.priors`). With ``centre`` the classifiers and the prior see every
image moved (whole pixels, at most ``max_centre_shift``) so that its ink's centre of mass is at
the field's centre, where the data set's digits have theirs; the gradient and the prior's pull
come back to the image where it stands (:mod:`trav_gui.engine.core.centring`). In a traversal
the move is the one that centres the *start*, kept for the whole run; outside one (``forward``
on its own) each image is centred by its own ink. With ``renoise`` the prior denoises ``x + σ_t·z`` (fresh
Gaussian z, seeded by the run's seed) instead of ``x``. Stop rules freeze a trajectory: ``"confident"`` once the
recipe's own p(target) >= ``confident_prob``; ``"plateau"`` once it is confident and the
prior's correction ‖D(x, σ_t) − x‖₂ has not shrunk for ``patience`` steps. No stop rule, no
prior and no ensemble member is ever a judge (refused by name).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import torch
from torch import nn

from trav_gui.engine.core.centring import centring_offsets, shift_batch
from trav_gui.engine.data.datasets import DEFAULT_DATASET
from trav_gui.engine.models.errors import RecipeError

__all__ = ["RECIPE_SUFFIX", "STOP_RULES", "Ensemble", "Guided", "GuidedRun", "Recipe", "describe"]

STOP_RULES = (None, "confident", "plateau")
RECIPE_SUFFIX = ".recipe"


class Ensemble(nn.Module):
    """Several classifiers as one: logits = the mean of their log-probabilities.

    The softmax of that is the normalized geometric mean of the members' probabilities, and
    its gradient the mean of theirs: a direction all members agree on.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise RecipeError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log_softmax(m(x), -1) for m in self.members]).mean(0)


@dataclass(frozen=True)
class Recipe:
    """The settings of a recipe; see the module's docstring. Validated on construction."""

    models: tuple[str, ...]
    prior: str | None = None
    prior_weight: float = 0.0
    sigma_max: float = 0.3
    sigma_min: float = 0.05
    anneal_steps: int = 100
    step_decay: float = 1.0
    step_scale: float = 1.0
    renoise: bool = False
    stop: str | None = None
    confident_prob: float = 0.9
    patience: int = 10
    centre: bool = False
    max_centre_shift: int = 6

    def __post_init__(self) -> None:
        models = self.models
        if isinstance(models, str) or not models or not all(isinstance(m, str) and m for m in models):
            raise RecipeError(f"models must be a list of model names, got {models!r}")
        object.__setattr__(self, "models", tuple(models))
        if self.prior is not None and not isinstance(self.prior, str):
            raise RecipeError(f"prior must be a prior's name or null, got {self.prior!r}")
        checks = [("prior_weight", 0.0, 1.0), ("sigma_max", 1e-4, 5.0), ("sigma_min", 1e-4, 5.0),
                  ("step_decay", 0.5, 1.0), ("step_scale", 0.01, 10.0), ("confident_prob", 1e-6, 1.0)]
        for name, lo, hi in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise RecipeError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
        if not isinstance(self.centre, bool):
            raise RecipeError(f"centre must be true or false, got {self.centre!r}")
        if isinstance(self.max_centre_shift, bool) or not isinstance(self.max_centre_shift, int) or not (
                1 <= self.max_centre_shift <= 16):
            raise RecipeError(f"max_centre_shift must be an integer in [1, 16], got {self.max_centre_shift!r}")
        for name in ("anneal_steps", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
                raise RecipeError(f"{name} must be an integer in [1, 100000], got {value!r}")
        if not isinstance(self.renoise, bool):
            raise RecipeError(f"renoise must be true or false, got {self.renoise!r}")
        if self.sigma_min > self.sigma_max:
            raise RecipeError("sigma_min must not exceed sigma_max")
        if self.stop not in STOP_RULES:
            raise RecipeError(f"stop must be one of {STOP_RULES}, got {self.stop!r}")
        if self.prior_weight > 0 and self.prior is None:
            raise RecipeError("prior_weight > 0 needs a prior")

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        if not isinstance(data, dict):
            raise RecipeError("a recipe is a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise RecipeError(f"unknown recipe settings: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return {**asdict(self), "models": list(self.models)}

    def sigma_at(self, t: int) -> float:
        """The prior's noise level at step ``t``: geometric from sigma_max to sigma_min, then held."""
        frac = min(t, self.anneal_steps) / self.anneal_steps
        return self.sigma_max * math.exp(frac * math.log(self.sigma_min / self.sigma_max))


class Guided(nn.Module):
    """A recipe ready to traverse: ``forward`` is the classifier's; :meth:`start` begins a run."""

    def __init__(self, classifier: nn.Module, recipe: Recipe, prior: nn.Module | None = None,
                 dataset: str = DEFAULT_DATASET) -> None:
        super().__init__()
        if (prior is None) != (recipe.prior is None):
            raise RecipeError("the recipe names a prior but none was given, or the reverse")
        self.classifier = classifier
        self.prior = prior
        self.recipe = recipe
        self.dataset = dataset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recipe.centre:
            x = shift_batch(x, centring_offsets(x, self.recipe.max_centre_shift))
        return self.classifier(x)

    def start(self, n: int, device: torch.device, seed: int = 0, x0: torch.Tensor | None = None) -> "GuidedRun":
        return GuidedRun(self, n, device, seed, x0)


class GuidedRun:
    """One traversal's state of a :class:`Guided` model: its steps and its stop rule."""

    def __init__(self, guided: Guided, n: int, device: torch.device, seed: int = 0,
                 x0: torch.Tensor | None = None) -> None:
        self.guided = guided
        self.recipe = guided.recipe
        # With ``centre``: the move that centres each start's ink, kept for the whole run (moves
        # recomputed every step would jitter by a pixel as ink comes and goes).
        self.offsets = (centring_offsets(x0, guided.recipe.max_centre_shift)
                        if guided.recipe.centre and x0 is not None else None)
        self.generator = torch.Generator(device=device).manual_seed(int(seed))
        self.prior = guided.prior
        self.stops = self.recipe.stop is not None
        self.best = torch.full((n,), math.inf, device=device)
        self.since_best = torch.zeros(n, dtype=torch.int64, device=device)
        self.confident = torch.zeros(n, dtype=torch.bool, device=device)
        self.correction = torch.zeros(n, device=device)

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's logits of this run's images, seen with each start's ink centred;
        ``rows``: the trajectories ``x`` holds, when not all (frozen ones are not computed)."""
        if self.offsets is None:
            return self.guided(x)
        return self.guided.classifier(shift_batch(x, self.offsets if rows is None else self.offsets[rows]))

    def advance(self, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """The next images (N, C, H, W) from ``x`` after step ``t``: ``step``'s move with the
        decayed step size, then the prior's pull, then the step's projection and clipping.
        With ``rows`` only those trajectories move (the others are frozen and kept as they are):
        the prior runs on them alone."""
        if rows is None:
            return self._advance(step, x, x0, grad, t, None)
        out = x.clone()
        out[rows] = self._advance(step, x[rows], x0[rows], grad[rows], t, rows, len(x))
        return out

    def _advance(self, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
                 rows: torch.Tensor | None, n: int = 0) -> torch.Tensor:
        r = self.recipe
        if r.step_decay != 1.0 or r.step_scale != 1.0:
            step = type(step)(step.step_size * r.step_scale * r.step_decay ** t, step.eps)
        moved = step.advance(x, x0, grad)
        if self.prior is None or r.prior_weight == 0:
            return moved
        sigma = r.sigma_at(t)
        seen = moved
        if r.renoise:  # denoise a noised copy: a stochastic pull that can leave a poor local mode
            # drawn for every trajectory, frozen or not, so that the noise does not depend on which are
            noise = torch.randn((n or len(moved), *moved.shape[1:]), generator=self.generator, device=moved.device)
            seen = moved + sigma * (noise if rows is None else noise[rows])
        offsets = self.offsets if self.offsets is None or rows is None else self.offsets[rows]
        with torch.no_grad():
            if offsets is not None:  # the prior sees the ink centred too, and its pull is moved back
                pull = shift_batch(self.prior(shift_batch(seen, offsets), sigma), -offsets) - moved
            else:
                pull = self.prior(seen, sigma) - moved
        if rows is None:
            self.correction = pull.flatten(1).norm(dim=1)
        else:
            self.correction[rows] = pull.flatten(1).norm(dim=1)
        return step.project(moved + r.prior_weight * pull, x0).clamp_(0.0, 1.0)

    def done(self, p_target: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) bool: trajectories the stop rule freezes after step ``t`` (p_target: own p(target))."""
        r = self.recipe
        self.confident |= p_target >= r.confident_prob
        if r.stop == "confident":
            return self.confident.clone()
        if r.stop != "plateau" or t == 0:
            return torch.zeros_like(self.confident)
        better = self.correction < self.best * 0.999
        self.best = torch.where(better, self.correction, self.best)
        self.since_best = torch.where(better, torch.zeros_like(self.since_best), self.since_best + 1)
        return self.confident & (self.since_best >= r.patience) & (t >= r.anneal_steps)


def describe(recipe: Recipe) -> str:
    """One line saying what a recipe does, for cards and lists."""
    parts = [" + ".join(recipe.models) if len(recipe.models) == 1 else f"mean log-prob of {', '.join(recipe.models)}"]
    if recipe.step_scale != 1.0 or recipe.step_decay != 1.0:
        parts.append(f"steps x {recipe.step_scale:g}" + (f", x {recipe.step_decay:g} per step"
                                                         if recipe.step_decay != 1.0 else ""))
    if recipe.prior:
        parts.append(f"prior {recipe.prior} (lambda {recipe.prior_weight:g}, sigma {recipe.sigma_max:g} -> "
                     f"{recipe.sigma_min:g})")
    if recipe.stop:
        parts.append(f"stop: {recipe.stop}")
    if recipe.centre:
        parts.append("sees the ink centred")
    return "recipe: " + "; ".join(parts)
