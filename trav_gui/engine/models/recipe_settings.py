"""A recipe's settings: the ``.recipe`` JSON file as a validated, frozen :class:`Recipe`, and the
lines that say what one does (:func:`describe`, :func:`retry_note`).

What the settings do is in :mod:`trav_gui.engine.models.recipes`, which traverses them. This module
needs no torch: cards, lists and the command line read recipes without loading a model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from trav_gui.engine.models.errors import RecipeError

__all__ = ["RECIPE_SUFFIX", "RETRY_SETTINGS", "STOP_RULES", "Recipe", "describe", "retry_note"]

STOP_RULES = (None, "confident", "plateau")
RECIPE_SUFFIX = ".recipe"
# What a retry may change: its pull's schedule and how many steps its critic finish takes. Not the
# models, prior, critic or the finish's σs (loaded once, shared by both pulls), nor the step decay (a
# retry counts its steps from its own restart).
RETRY_SETTINGS = ("prior_weight", "sigma_max", "sigma_min", "anneal_steps", "step_scale", "renoise", "patience",
                  "critic_steps", "critic_pull")


@dataclass(frozen=True)
class Recipe:
    """The settings of a recipe; what they do: :mod:`trav_gui.engine.models.recipes`. Validated on construction."""

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
    finish_sigmas: tuple[float, ...] = ()
    finish_noise: bool = False
    critic: str | None = None
    critic_steps: int = 30
    critic_step: float = 0.1
    critic_clean_sigma: float | None = None
    critic_pull: float = 0.0
    retry: dict | None = None
    retry_below: float = 0.0
    retry_keep_better: bool = False

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
        finish = self.finish_sigmas
        if isinstance(finish, (str, bytes)) or not isinstance(finish, (list, tuple)) or len(finish) > 100 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 1e-4 <= v <= 5.0 for v in finish):
            raise RecipeError(f"finish_sigmas must be a list of at most 100 numbers in [0.0001, 5], got {finish!r}")
        object.__setattr__(self, "finish_sigmas", tuple(float(v) for v in finish))
        if any(b >= a for a, b in zip(self.finish_sigmas, self.finish_sigmas[1:])):
            raise RecipeError(f"finish_sigmas must decrease, got {list(self.finish_sigmas)}")
        if self.finish_sigmas and (self.prior is None or self.stop is None):
            raise RecipeError("finish_sigmas needs a prior and a stop rule (it finishes what the stop rule stops)")
        if not isinstance(self.finish_noise, bool):
            raise RecipeError(f"finish_noise must be true or false, got {self.finish_noise!r}")
        if self.finish_noise and not self.finish_sigmas:
            raise RecipeError("finish_noise needs finish_sigmas")
        if self.critic is not None and (not isinstance(self.critic, str) or not self.critic):
            raise RecipeError(f"critic must be a critic's name or null, got {self.critic!r}")
        if self.critic is not None and not self.finish_sigmas:
            raise RecipeError("critic needs finish_sigmas (its steps are the finish's last)")
        if isinstance(self.critic_steps, bool) or not isinstance(self.critic_steps, int) or not (
                1 <= self.critic_steps <= 200):  # all in one frame: more would stall the app's run
            raise RecipeError(f"critic_steps must be an integer in [1, 200], got {self.critic_steps!r}")
        if isinstance(self.critic_step, bool) or not isinstance(self.critic_step, (int, float)) or not (
                1e-4 <= self.critic_step <= 10.0):
            raise RecipeError(f"critic_step must be a number in [0.0001, 10], got {self.critic_step!r}")
        clean = self.critic_clean_sigma
        if clean is not None and (isinstance(clean, bool) or not isinstance(clean, (int, float))
                                  or not 1e-4 <= clean <= 5.0):
            raise RecipeError(f"critic_clean_sigma must be a number in [0.0001, 5] or null, got {clean!r}")
        if clean is not None and self.critic is None:
            raise RecipeError("critic_clean_sigma needs a critic (it is the noise level its finish is cleaned at)")
        pull = self.critic_pull
        if isinstance(pull, bool) or not isinstance(pull, (int, float)) or not 0.0 <= pull <= 10.0:
            raise RecipeError(f"critic_pull must be a number in [0, 10], got {pull!r}")
        if pull and self.critic is None:
            raise RecipeError("critic_pull needs a critic (its steps go up the critic's logit)")
        self._check_retry()

    def _check_retry(self) -> None:
        if isinstance(self.retry_below, bool) or not isinstance(self.retry_below, (int, float)) or not (
                -100.0 <= self.retry_below <= 100.0):
            raise RecipeError(f"retry_below must be a number in [-100, 100], got {self.retry_below!r}")
        if not isinstance(self.retry_keep_better, bool):
            raise RecipeError(f"retry_keep_better must be true or false, got {self.retry_keep_better!r}")
        if self.retry is None:
            if self.retry_keep_better:
                raise RecipeError("retry_keep_better needs a retry")
            return
        if not isinstance(self.retry, dict) or not self.retry:
            raise RecipeError(f"retry must be an object of settings to change, got {self.retry!r}")
        unknown = sorted(set(self.retry) - set(RETRY_SETTINGS))
        if unknown:
            raise RecipeError(f"retry cannot change {unknown}; it changes only {list(RETRY_SETTINGS)}")
        if self.critic is None:
            raise RecipeError("retry needs a critic (it judges the endpoint a retry replaces)")
        if self.step_decay != 1.0:
            raise RecipeError("retry needs step_decay 1 (a retry counts its steps from its restart)")
        object.__setattr__(self, "retry", dict(sorted(self.retry.items())))
        self.retry_recipe()  # validates the retry's settings as a recipe's

    def first_pull(self) -> Recipe:
        """This recipe without its retry (itself when it has none)."""
        return Recipe.from_dict({**self.to_dict(), "retry": None, "retry_below": 0.0, "retry_keep_better": False})

    def retry_recipe(self) -> Recipe | None:
        """The recipe of the second pull: this one with ``retry``'s settings and no retry; None without one."""
        if self.retry is None:
            return None
        try:
            return Recipe.from_dict({**self.first_pull().to_dict(), **self.retry})
        except RecipeError as exc:
            raise RecipeError(f"retry: {exc}") from None

    def __hash__(self) -> int:  # ``retry`` is a dict
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        if not isinstance(data, dict):
            raise RecipeError("a recipe is a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise RecipeError(f"unknown recipe settings: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        out = {**asdict(self), "models": list(self.models), "finish_sigmas": list(self.finish_sigmas)}
        if self.critic is None:  # as recipes were before critics: their settings and fingerprints unchanged
            for name in ("critic", "critic_steps", "critic_step"):
                del out[name]
        if self.critic_clean_sigma is None:  # likewise for recipes cleaned at the cascade's last sigma
            del out["critic_clean_sigma"]
        if not self.critic_pull:  # likewise for recipes whose critic acts in the finish alone
            del out["critic_pull"]
        if self.retry is None:  # likewise for recipes without a retry
            del out["retry"], out["retry_below"]
        else:
            out["retry"] = dict(self.retry)
        if not self.retry_keep_better:  # likewise for recipes that keep the second endpoint
            del out["retry_keep_better"]
        return out

    def sigma_at(self, t: int) -> float:
        """The prior's noise level at step ``t``: geometric from sigma_max to sigma_min, then held."""
        frac = min(t, self.anneal_steps) / self.anneal_steps
        return self.sigma_max * math.exp(frac * math.log(self.sigma_min / self.sigma_max))


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
    if recipe.finish_sigmas:
        sigmas = ", ".join(f"{v:g}" for v in recipe.finish_sigmas)
        parts.append(f"finish: resampled by the prior from sigma {sigmas}" if recipe.finish_noise
                     else f"finish: denoised at sigma {sigmas}")
    if recipe.critic_pull:
        parts.append(f"once confident, each step also {recipe.critic_pull:g} x the step up critic {recipe.critic}'s realism")
    if recipe.critic:
        again = ("denoised again" if recipe.critic_clean_sigma is None
                 else f"denoised again at sigma {recipe.critic_clean_sigma:g}")
        parts.append(f"then {recipe.critic_steps} steps of {recipe.critic_step:g} up critic {recipe.critic}'s "
                     f"realism, {again}, kept where its own p(target) holds")
    if recipe.retry:
        changes = ", ".join(f"{k} {json.dumps(v)}" for k, v in recipe.retry.items())
        parts.append(f"where the critic's logit of the endpoint is below {recipe.retry_below:g} or its own p(target) "
                     f"below {recipe.confident_prob:g}, once more from the start with {changes}"
                     + ("; of the two endpoints the one the critic finds more real is kept"
                        if recipe.retry_keep_better else ""))
    if recipe.centre:
        parts.append("sees the ink centred")
    return "recipe: " + "; ".join(parts)


def retry_note(name: str, recipe: Recipe, steps: int, measured_steps: int | None = None) -> str | None:
    """One line for a run of ``steps`` steps with recipe ``name`` when they leave its retry too little room
    (fewer than the shortest first pull and retry together, or than ``measured_steps``, the steps its
    card's figures were measured with); None when they do not, or it has no retry."""
    retry = recipe.retry_recipe()
    if retry is None:
        return None
    finish = len(recipe.finish_sigmas) + 1  # the critic's step is the finish's last
    shortest = recipe.anneal_steps + finish + 1 + retry.anneal_steps + finish
    wanted = max(shortest, measured_steps or 0)
    if steps >= wanted:
        return None
    room = "no" if steps < shortest else "too little"
    measured = f" (its card's figures are at {wanted} steps)" if measured_steps == wanted else ""
    return (f"{name} goes back to its start where its critic rejects the endpoint; {steps} steps leave {room} room "
            f"for that: give it {wanted}{measured}")
