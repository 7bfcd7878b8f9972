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
Gaussian z) instead of ``x``. The noise of a trajectory (here and in a sampling finish) is drawn from its own
generator, seeded by the run's seed and the trajectory's start image, so that a start traversed alone and the
same start in a gallery or a success map get the same noise and the same frames. Stop rules freeze a trajectory: ``"confident"`` once the
recipe's own p(target) >= ``confident_prob``; ``"plateau"`` once it is confident and the
prior's correction ‖D(x, σ_t) − x‖₂ has not shrunk for ``patience`` steps.

With ``finish_sigmas`` (σ_1 > σ_2 > …) a trajectory the stop rule stops is not frozen at once: it
takes one more step per σ_k, the prior's alone, and is frozen after the last. Without
``finish_noise`` each such step replaces the frame by the prior's clean estimate D(x, σ_k) (a
cascade of denoisings, as a score-based sampler's last step is: it removes the faint haze that
the classifier's steps spread over the field); with it, the first step adds noise of σ_1 and the
steps are those of an ancestral sampler of the prior from there down to the last σ
(SDEdit, Meng et al. 2022), each frame showing the step's clean estimate. No stop rule, no
prior and no ensemble member is ever a judge (refused by name).

With ``critic`` (a realism critic's name, :class:`~trav_gui.engine.models.priors.RealismCritic`) the
finish takes one more step after its last σ: ``critic_steps`` normalized L2 steps of ``critic_step``
up the critic's logit (seen centred, as the prior sees the frame), then the prior's clean estimate at
the last σ again (or at ``critic_clean_sigma``), which removes the haze the steps leave. The critic learned to tell real images
from this recipe's endpoints, robustly, so its gradient points from what gives an endpoint away
toward what real images have (discriminator guidance, Kim et al. 2023): the strokes, not the class.
So its frame is kept only where the recipe's own p(target) after it is at least what it was before
(or at least ``confident_prob``); elsewhere the frame made with half, then a quarter of the steps
is tried, and if neither holds the frame before it stays (``GuidedRun.critic_kept``).

With ``critic_pull`` the critic also steers the pull itself, while the digit's shape is still forming
(discriminator guidance at every step, as Kim et al. do, not only after it): a trajectory the recipe is
already confident of (p(target) reached ``confident_prob`` in this pull) moves, after the classifier's
step, ``critic_pull`` × that step's size along the critic's normalized gradient (seen centred), before
the prior's pull. Until it is confident it moves toward the target alone.

With ``retry`` (a critic's recipe only) the critic also judges the finished endpoint: where its logit
of the last frame (seen centred) is below ``retry_below``, or the recipe's own p(target) there is
below ``confident_prob``, the trajectory goes back to its start and traverses once more with the
settings ``retry`` changes (``RETRY_SETTINGS``: e.g. ``{"sigma_max": 1.0, "renoise": true}``, a
stochastic pull that can leave the mode the first pull was held in), counting its schedule from the
restart, with its stop rule, finish and critic step; the second endpoint is kept (with
``retry_keep_better``: unless the critic finds the first, if it was confident, more real). A rejection
sampler with a second proposal, shown as it happens: the frames go back to the start and the
second pull follows. The retry's noise is drawn as the recipe with those settings alone draws it
(the run's seed and the start), so its frames are that recipe's, later by the first pull's steps. It
starts only where the run's steps leave room for the shortest retry (``anneal_steps`` plus the
finish); one still unfinished at the run's last step ends on the first endpoint
(``GuidedRun.phase``: 1 for a trajectory in its retry).
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
from torch import nn

from trav_gui.engine.core.centring import centring_offsets, shift_batch
from trav_gui.engine.data.datasets import DEFAULT_DATASET
from trav_gui.engine.models.errors import RecipeError
from trav_gui.engine.models.recipe_settings import (
    RECIPE_SUFFIX,
    RETRY_SETTINGS,
    STOP_RULES,
    Recipe,
    describe,
    retry_note,
)

# The settings live in recipe_settings (no torch); they are named here too, where recipes are traversed.
__all__ = ["RECIPE_SUFFIX", "RETRY_SETTINGS", "STOP_RULES", "Ensemble", "Guided", "GuidedRun", "Recipe", "describe",
           "retry_note"]


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


class Guided(nn.Module):
    """A recipe ready to traverse: ``forward`` is the classifier's; :meth:`start` begins a run."""

    def __init__(self, classifier: nn.Module, recipe: Recipe, prior: nn.Module | None = None,
                 dataset: str = DEFAULT_DATASET, critic: nn.Module | None = None) -> None:
        super().__init__()
        if (prior is None) != (recipe.prior is None):
            raise RecipeError("the recipe names a prior but none was given, or the reverse")
        if (critic is None) != (recipe.critic is None):
            raise RecipeError("the recipe names a critic but none was given, or the reverse")
        self.classifier = classifier
        self.prior = prior
        self.critic = critic
        self.recipe = recipe
        self.dataset = dataset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recipe.centre:
            x = shift_batch(x, centring_offsets(x, self.recipe.max_centre_shift))
        return self.classifier(x)

    def start(self, n: int, device: torch.device, seed: int = 0, x0: torch.Tensor | None = None,
              targets: torch.Tensor | None = None, steps: int | None = None) -> "GuidedRun":
        return GuidedRun(self, n, device, seed, x0, targets, steps)


class GuidedRun:
    """One traversal's state of a :class:`Guided` model: its steps and its stop rule."""

    def __init__(self, guided: Guided, n: int, device: torch.device, seed: int = 0,
                 x0: torch.Tensor | None = None, targets: torch.Tensor | None = None,
                 steps: int | None = None) -> None:
        self.guided = guided
        self.recipe = guided.recipe
        self.retry = guided.recipe.retry_recipe()
        if self.retry is not None and x0 is None:
            raise RecipeError("a recipe with a retry needs the run's start images (a retry starts there again)")
        if self.recipe.critic is not None and targets is None:
            raise RecipeError("a recipe with a critic needs the run's targets (its step keeps the class)")
        # (N,) target classes: the critic's step is kept only where it keeps the recipe's own p(target)
        self.targets = None if targets is None else torch.as_tensor(targets, device=device).long().expand(n)
        # With ``centre``: the move that centres each start's ink, kept for the whole run (moves
        # recomputed every step would jitter by a pixel as ink comes and goes).
        self.offsets = (centring_offsets(x0, guided.recipe.max_centre_shift)
                        if guided.recipe.centre and x0 is not None else None)
        stochastic = self.recipe.renoise or self.recipe.finish_noise
        self.generators = trajectory_generators(n, device, seed, x0) if stochastic else [None] * n
        self.prior = guided.prior
        self.stops = self.recipe.stop is not None
        self.best = torch.full((n,), math.inf, device=device)
        self.since_best = torch.zeros(n, dtype=torch.int64, device=device)
        self.confident = torch.zeros(n, dtype=torch.bool, device=device)
        self.correction = torch.zeros(n, device=device)
        # The finish: -1 until the stop rule stops a trajectory, then the index of its next finish
        # step; frozen once it has taken them all. ``hidden``: a sampling finish's noisy state.
        self.finish_step = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.sigmas = torch.tensor(self.recipe.finish_sigmas, device=device)
        self.finish_steps = len(self.recipe.finish_sigmas) + (self.recipe.critic is not None)
        self.hidden: torch.Tensor | None = None
        # (N,) the critic steps each trajectory's finish kept (0: none, or not taken yet)
        self.critic_kept = torch.zeros(n, dtype=torch.int64, device=device)
        # The retry: which pull each trajectory is in (0 the first, 1 the retry) and the step its retry's
        # start frame is at (0 for the first pull); the first pull's endpoint and its critic logit.
        self.seed, self.x0, self.steps = seed, x0, steps
        self.phase = torch.zeros(n, dtype=torch.int64, device=device)
        self.t0 = torch.zeros(n, dtype=torch.int64, device=device)
        self.end_frame: torch.Tensor | None = None
        self.end_critic = torch.full((n,), math.nan, device=device)
        # With ``retry_keep_better``: whether the first endpoint was confident (retried for its critic logit alone).
        self.first_confident = torch.zeros(n, dtype=torch.bool, device=device)

    def _noise(self, rows: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """(len(rows), *shape) standard normal noise, each row drawn from its trajectory's generator."""
        return torch.stack([torch.randn(shape, generator=self.generators[i], device=self.generators[i].device)
                            for i in rows.tolist()])

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
        the prior runs on them alone. A trajectory whose retry begins goes back to its start."""
        if self.retry is not None:
            return self._advance_with_retry(step, x, x0, grad, t, rows)
        if rows is None:
            return self._advance(step, x, x0, grad, t, None)
        out = x.clone()
        out[rows] = self._advance(step, x[rows], x0[rows], grad[rows], t, rows, len(x))
        return out

    def _advance_with_retry(self, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
                            rows: torch.Tensor | None) -> torch.Tensor:
        n = len(x)
        index = rows if rows is not None else torch.arange(n, device=x.device)
        back = (self.phase[index] == 1) & (self.t0[index] == t + 1)  # a retry begun after step t: its start
        moving = index[~back]
        out = x.clone()
        if len(moving):
            out[moving] = self._advance(step, x[moving], x0[moving], grad[moving], t, moving, n)
        if bool(back.any()):
            out[index[back]] = x0[index[back]]
        if self.steps is not None and t + 1 == self.steps:
            # The run's last frame comes next: a retry that will not have finished ends on the first endpoint.
            unfinished = index[(self.phase[index] == 1) & (self.finish_step[index] < self.finish_steps)]
            if len(unfinished):
                out[unfinished] = self.end_frame[unfinished]
        return out

    def _advance(self, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
                 rows: torch.Tensor | None, n: int = 0) -> torch.Tensor:
        n = n or len(x)
        index = rows if rows is not None else torch.arange(len(x), device=x.device)
        k = self.finish_step[index]
        finishing = k >= 0
        if not bool(finishing.any()):
            return self._step(step, x, x0, grad, t, rows)
        out = x.clone()  # a finished trajectory is frozen (the caller keeps it as it is)
        active = finishing & (k < self.finish_steps)
        if bool(active.any()):
            # the run's projection too (the adversarial variant stays in its ball)
            out[active] = step.project(self._finish(x[active], index[active], n), x0[active]).clamp_(0.0, 1.0)
            if self.retry is not None:  # the endpoint a retry would replace, and its critic logit
                ended = active & (self.finish_step[index] >= self.finish_steps)
                if bool(ended.any()):
                    self._ended(out, ended.nonzero().squeeze(1), index[ended], n)
        if not bool(finishing.all()):
            out[~finishing] = self._step(step, x[~finishing], x0[~finishing], grad[~finishing], t,
                                         index[~finishing])
        return out

    def _ended(self, out: torch.Tensor, at: torch.Tensor, rows: torch.Tensor, n: int) -> None:
        """The trajectories ``rows`` (at positions ``at`` of ``out``) have just finished a pull: keep
        their endpoint and its critic logit. With ``retry_keep_better`` a retry that ends less real,
        for the critic, than its first endpoint (one its classifiers were confident of) ends on that."""
        if self.end_frame is None:
            self.end_frame = torch.zeros((n, *out.shape[1:]), device=out.device)
        move, _ = self._views(rows)
        with torch.no_grad():
            logit = self.guided.critic(move(out[at])).reshape(-1)
        if self.recipe.retry_keep_better:
            first = (self.phase[rows] == 1) & self.first_confident[rows] & (self.end_critic[rows] > logit)
            if bool(first.any()):
                out[at[first]] = self.end_frame[rows[first]]
                logit[first] = self.end_critic[rows[first]]
        self.end_frame[rows] = out[at]
        self.end_critic[rows] = logit

    def _finish(self, x: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
        """One finish step of the trajectories ``rows`` (all finishing): see the module's docstring."""
        k = self.finish_step[rows]
        critic = k >= len(self.sigmas)
        if bool(critic.any()):  # the critic's step, after the last σ
            out = x.clone()
            out[critic] = self._critic_step(x[critic], rows[critic])
            if not bool(critic.all()):
                out[~critic] = self._finish(x[~critic], rows[~critic], n)
            return out
        sigma = self.sigmas[k]
        move, back = self._views(rows)
        self.finish_step[rows] = k + 1
        with torch.no_grad():
            if not self.recipe.finish_noise:
                return back(self.prior(move(x), sigma)).clamp_(0.0, 1.0)
            noise = self._noise(rows, (2, *x.shape[1:])).to(x).transpose(0, 1)  # (2, rows, ...)
            if self.hidden is None:
                self.hidden = torch.zeros((n, *x.shape[1:]), device=x.device)
            s = sigma.view(-1, 1, 1, 1)
            first = (k == 0).view(-1, 1, 1, 1)
            state = torch.where(first, move(x) + s * noise[0], self.hidden[rows])
            clean = self.prior(state, sigma)
            # An ancestral step from σ_k to σ_k+1 (none after the last: its clean estimate is the frame).
            last = k + 1 >= len(self.sigmas)
            s_next = self.sigmas[(k + 1).clamp(max=len(self.sigmas) - 1)].view(-1, 1, 1, 1)
            up = (s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2).clamp(min=0.0).sqrt()
            down = (s_next ** 2 - up ** 2).clamp(min=0.0).sqrt()
            nxt = clean + down * (state - clean) / s + up * noise[1]
            self.hidden[rows] = torch.where(last.view(-1, 1, 1, 1), clean, nxt)
            return back(clean).clamp_(0.0, 1.0)

    def _views(self, rows: torch.Tensor):
        """The moves that centre the trajectories ``rows``' starts, and back (identities without ``centre``)."""
        offsets = None if self.offsets is None else self.offsets[rows]
        if offsets is None:
            return (lambda v: v), (lambda v: v)
        return (lambda v: shift_batch(v, offsets)), (lambda v: shift_batch(v, -offsets))

    def _critic_step(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The critic's finish step of the trajectories ``rows``, each with its pull's ``critic_steps``
        (a retry's may differ from the first pull's)."""
        if self.retry is None or self.retry.critic_steps == self.recipe.critic_steps:
            return self._critic_steps(self.recipe, x, rows)
        again = self.phase[rows] == 1
        out = x.clone()
        for r, these in ((self.recipe, ~again), (self.retry, again)):
            if bool(these.any()):
                out[these] = self._critic_steps(r, x[these], rows[these])
        return out

    def _critic_steps(self, r: Recipe, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``r.critic_steps`` normalized L2 steps up the critic's logit, then the prior's clean
        estimate at the last σ; seen centred. Kept where the recipe's own p(target) holds; elsewhere
        the same after half, then a quarter of the steps; else the frame before."""
        move, back = self._views(rows)
        self.finish_step[rows] += 1
        clean = self.sigmas[-1] if r.critic_clean_sigma is None else r.critic_clean_sigma
        ladder = sorted({r.critic_steps, r.critic_steps // 2, r.critic_steps // 4} - {0}, reverse=True)
        tried = {}
        y = move(x).detach()
        with torch.enable_grad():
            for i in range(1, r.critic_steps + 1):
                y.requires_grad_(True)
                g, = torch.autograd.grad(self.guided.critic(y).sum(), y)
                g = _unit(g)
                y = (y.detach() + r.critic_step * g).clamp_(0.0, 1.0)
                if i in ladder:
                    tried[i] = y
        with torch.no_grad():
            # The critic knows realism, not classes: a frame it made is kept only where the
            # recipe's own p(target) is at least where it was (or the stop rule's threshold): the
            # critic never takes a run below its stop rule's confidence, nor lower than it was.
            target = self.targets[rows, None]
            p_before = torch.softmax(self.forward(x, rows), 1).gather(1, target).squeeze(1)
            out, kept = x.clone(), torch.zeros(len(x), dtype=torch.int64, device=x.device)
            for k in ladder:
                frame = back(self.prior(tried[k], clean)).clamp_(0.0, 1.0)
                p = torch.softmax(self.forward(frame, rows), 1).gather(1, target).squeeze(1)
                take = (kept == 0) & (p >= p_before.clamp(max=r.confident_prob))
                out[take], kept[take] = frame[take], k
            self.critic_kept[rows] = kept
            return out

    def _step(self, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
              rows: torch.Tensor | None) -> torch.Tensor:
        """The classifier's step and the prior's pull (trajectories not finishing), each with its pull's
        settings: a retry's counted from its restart."""
        index = rows if rows is not None else torch.arange(len(x), device=x.device)
        again = self.phase[index] == 1
        if not bool(again.any()):
            return self._pull(self.recipe, step, x, x0, grad, t, self.recipe.sigma_at(t), index)
        out = torch.empty_like(x)
        if not bool(again.all()):
            first = ~again
            out[first] = self._pull(self.recipe, step, x[first], x0[first], grad[first], t, self.recipe.sigma_at(t),
                                    index[first])
        local = (t - self.t0[index[again]]).tolist()
        sigma = torch.tensor([self.retry.sigma_at(v) for v in local], device=x.device)
        out[again] = self._pull(self.retry, step, x[again], x0[again], grad[again], t, sigma, index[again])
        return out

    def _pull(self, r: Recipe, step, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor, t: int,
              sigma: float | torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The step and pull of recipe ``r`` at noise level ``sigma`` (one, or one per row) for the
        trajectories ``index``."""
        if r.step_decay != 1.0 or r.step_scale != 1.0:
            step = type(step)(step.step_size * r.step_scale * r.step_decay ** t, step.eps)
        moved = step.advance(x, x0, grad)
        if r.critic_pull:
            moved = self._critic_pull(r, step, x, x0, moved, index)
        if self.prior is None or r.prior_weight == 0:
            return moved
        seen = moved
        if r.renoise:  # denoise a noised copy: a stochastic pull that can leave a poor local mode
            s = sigma.view(-1, *[1] * (moved.dim() - 1)) if isinstance(sigma, torch.Tensor) else sigma
            seen = moved + s * self._noise(index, tuple(moved.shape[1:])).to(moved)
        offsets = None if self.offsets is None else self.offsets[index]
        with torch.no_grad():
            if offsets is not None:  # the prior sees the ink centred too, and its pull is moved back
                pull = shift_batch(self.prior(shift_batch(seen, offsets), sigma), -offsets) - moved
            else:
                pull = self.prior(seen, sigma) - moved
        self.correction[index] = pull.flatten(1).norm(dim=1)
        return step.project(moved + r.prior_weight * pull, x0).clamp_(0.0, 1.0)

    def _critic_pull(self, r: Recipe, step, x: torch.Tensor, x0: torch.Tensor, moved: torch.Tensor,
                     index: torch.Tensor) -> torch.Tensor:
        """With ``critic_pull``: the trajectories ``index`` that are already confident also move
        ``critic_pull`` × the step's size along the critic's normalized gradient at ``x`` (seen centred),
        projected and clipped as the step is (the adversarial variant stays in its ball)."""
        use = self.confident[index]
        if not bool(use.any()):
            return moved
        move, back = self._views(index[use])
        y = move(x[use]).detach().requires_grad_(True)
        with torch.enable_grad():
            g, = torch.autograd.grad(self.guided.critic(y).sum(), y)
        g = back(g)
        g = _unit(g)
        out = moved.clone()
        out[use] = step.project(moved[use] + r.critic_pull * step.step_size * g, x0[use]).clamp_(0.0, 1.0)
        return out

    def done(self, p_target: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) bool: trajectories the stop rule freezes after step ``t`` (p_target: own p(target))."""
        stopped = self._stopped(p_target, t)
        if not self.recipe.finish_sigmas:
            return stopped
        self.finish_step[stopped & (self.finish_step < 0)] = 0  # its finish starts with the next step
        finished = self.finish_step >= self.finish_steps
        if self.retry is None:
            return finished
        # An endpoint the first pull keeps is judged again at every step, the same way (its frame and the
        # critic's logit of it do not change, and the room only shrinks).
        rejected = finished & (self.phase == 0) & ((self.end_critic < self.recipe.retry_below)
                                                   | (p_target < self.recipe.confident_prob))
        # the shortest retry: its anneal, then the finish (its start frame is the next one)
        room = self.steps is None or self.steps - (t + 1) >= self.retry.anneal_steps + self.finish_steps
        again = rejected if room else torch.zeros_like(rejected)
        if bool(again.any()):
            self.first_confident[again] = p_target[again] >= self.recipe.confident_prob
            self._begin_retry(again.nonzero().squeeze(1), t + 1)
            finished = finished & ~again
        return finished

    def _begin_retry(self, rows: torch.Tensor, t0: int) -> None:
        """The trajectories ``rows`` start their retry at step ``t0`` (its frame: their start)."""
        self.phase[rows], self.t0[rows] = 1, t0
        self.best[rows], self.since_best[rows], self.correction[rows] = math.inf, 0, 0.0
        self.confident[rows], self.finish_step[rows], self.critic_kept[rows] = False, -1, 0
        if self.retry.renoise:  # the noise the retry's recipe alone would draw for this start
            for i in rows.tolist():
                self.generators[i] = trajectory_generators(1, self.x0.device, self.seed, self.x0[i:i + 1])[0]

    def _stopped(self, p_target: torch.Tensor, t: int) -> torch.Tensor:
        """(N,) bool: the trajectories the stop rule stops after step ``t``."""
        r = self.recipe
        self.confident |= p_target >= r.confident_prob
        if r.stop == "confident":
            return self.confident.clone()
        if r.stop != "plateau":
            return torch.zeros_like(self.confident)
        if self.retry is not None:
            return self._plateau_with_retry(t)
        if t == 0:
            return torch.zeros_like(self.confident)
        better = self.correction < self.best * 0.999
        self.best = torch.where(better, self.correction, self.best)
        self.since_best = torch.where(better, torch.zeros_like(self.since_best), self.since_best + 1)
        return self.confident & (self.since_best >= r.patience) & (t >= r.anneal_steps)

    def _plateau_with_retry(self, t: int) -> torch.Tensor:
        """The plateau rule, each trajectory with its pull's patience and anneal, counted from its pull's start."""
        local = t - self.t0
        moving = local > 0  # as at a run's step 0: nothing to compare yet
        again = self.phase == 1
        patience = torch.where(again, self.retry.patience, self.recipe.patience)
        anneal = torch.where(again, self.retry.anneal_steps, self.recipe.anneal_steps)
        better = moving & (self.correction < self.best * 0.999)
        self.best = torch.where(better, self.correction, self.best)
        self.since_best = torch.where(better, torch.zeros_like(self.since_best),
                                      torch.where(moving, self.since_best + 1, self.since_best))
        return moving & self.confident & (self.since_best >= patience) & (local >= anneal)


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Each row of ``g`` scaled to unit L2 norm (a zero row stays zero)."""
    return g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (g.dim() - 1))


def trajectory_generators(n: int, device: torch.device, seed: int = 0,
                          x0: torch.Tensor | None = None) -> list[torch.Generator]:
    """One random generator per trajectory, seeded by ``seed`` and the trajectory's start image
    (by its row when there is no start): a start's noise does not depend on the batch it is in."""
    starts = None if x0 is None else x0.detach().to("cpu", torch.float32).contiguous().numpy()  # one copy
    out = []
    for i in range(n):
        key = hashlib.blake2b(str(int(seed)).encode(), digest_size=8)
        key.update(starts[i].tobytes() if starts is not None else f"row {i}".encode())
        out.append(torch.Generator(device=device).manual_seed(int.from_bytes(key.digest(), "little") >> 1))
    return out
