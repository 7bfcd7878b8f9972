"""Recipes (ensembles, priors, schedules, stop rules), priors and the realism metrics they are judged by."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from trav_gui.engine import realism
from trav_gui.engine.core.traversal import TraversalConfig, traverse
from trav_gui.engine.files import sha256_of
from trav_gui.engine.models.errors import ModelLoadError, PriorLoadError, RecipeError
from trav_gui.engine.models.loading import load_model, load_recipe
from trav_gui.engine.models.priors import DenoisingAE, ScoreUNet, load_prior, save_prior
from trav_gui.engine.models.recipes import Ensemble, Guided, Recipe, describe
from trav_gui.paths import models_dir


class Linear(nn.Module):
    """logits = W·x with fixed weights: gradients known in closed form."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(10, 784, generator=torch.Generator().manual_seed(seed)) * 0.05,
                              requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


class ConstantPrior(nn.Module):
    """A "denoiser" that always answers the same image: the pull is exactly (c − x)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.sigmas = []

    def forward(self, x, sigma):
        self.sigmas.append(float(sigma))
        return torch.full_like(x, self.value)


def test_ensemble_logits_are_the_mean_log_probability():
    a, b = Linear(0), Linear(1)
    x = torch.rand(3, 1, 28, 28)
    expected = (torch.log_softmax(a(x), -1) + torch.log_softmax(b(x), -1)) / 2
    assert torch.allclose(Ensemble([a, b])(x), expected)
    probs = torch.softmax(Ensemble([a, b])(x), -1)
    geo = (torch.softmax(a(x), -1) * torch.softmax(b(x), -1)).sqrt()
    assert torch.allclose(probs, geo / geo.sum(-1, keepdim=True), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ({"models": []}, "models"),
    ({"models": "robust"}, "models"),
    ({"models": ["robust"], "prior_weight": 1.5, "prior": "p"}, "prior_weight"),
    ({"models": ["robust"], "prior_weight": 0.1}, "needs a prior"),
    ({"models": ["robust"], "stop": "never"}, "stop"),
    ({"models": ["robust"], "sigma_min": 0.5, "sigma_max": 0.1}, "sigma_min"),
    ({"models": ["robust"], "step_decay": float("nan")}, "step_decay"),
    ({"models": ["robust"], "anneal_steps": 0}, "anneal_steps"),
    ({"models": ["robust"], "lr": 1}, "unknown"),
    ({"models": ["robust"], "centre": "yes"}, "centre"),
    ({"models": ["robust"], "centre": True, "max_centre_shift": 0}, "max_centre_shift"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1, 0.3]}, "decrease"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": 0.3}, "finish_sigmas"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.3, 0.0]}, "finish_sigmas"),
    ({"models": ["robust"], "prior": "p", "finish_sigmas": [0.3]}, "stop rule"),
    ({"models": ["robust"], "stop": "confident", "finish_sigmas": [0.3]}, "needs a prior"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_noise": True}, "finish_noise needs"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "critic": "c"}, "critic needs finish_sigmas"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "critic_steps": 0}, "critic_steps"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "critic_step": -1}, "critic_step"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1],
      "retry": {"renoise": True}}, "retry needs a critic"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "retry": {"critic": "other"}}, "retry cannot change"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "retry": {}}, "retry must be"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "retry": {"sigma_max": 9.0}}, "retry: sigma_max"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "step_decay": 0.99, "retry": {"renoise": True}}, "step_decay 1"),
    ({"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1], "critic": "c",
      "retry": {"renoise": True}, "retry_below": float("nan")}, "retry_below"),
])
def test_bad_recipes_are_refused_naming_the_setting(bad, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict(bad)


def test_sigma_anneals_geometrically_then_holds():
    r = Recipe(("robust",), sigma_max=0.4, sigma_min=0.1, anneal_steps=10)
    assert r.sigma_at(0) == pytest.approx(0.4)
    assert r.sigma_at(5) == pytest.approx(0.2)  # the geometric mean
    assert r.sigma_at(10) == pytest.approx(0.1) and r.sigma_at(500) == pytest.approx(0.1)


def _frames(model, x0, target, steps=5, step_size=0.5):
    return list(traverse([model], x0, target, TraversalConfig(steps=steps, step_size=step_size)))


def test_a_guided_step_is_the_classifier_step_plus_lambda_times_the_prior_pull():
    clf = Linear(0)
    x0 = torch.full((1, 1, 28, 28), 0.5)
    plain = _frames(clf, x0, 3, steps=1)
    prior = ConstantPrior(0.2)
    guided = Guided(clf, Recipe(("x",), prior="p", prior_weight=0.25, sigma_max=0.3, sigma_min=0.3), prior)
    frames = _frames(guided, x0, 3, steps=1)
    moved = plain[1].images[0, 0]
    assert np.allclose(frames[1].images[0, 0], moved + 0.25 * (0.2 - moved), atol=1e-6)
    assert prior.sigmas == [pytest.approx(0.3)]


def test_step_decay_shrinks_each_step_by_its_factor():
    guided = Guided(Linear(0), Recipe(("x",), step_decay=0.5))
    frames = _frames(guided, np.full((28, 28), 0.5, np.float32), 3, steps=4, step_size=0.4)
    lengths = [np.linalg.norm(b.images[0, 0] - a.images[0, 0]) for a, b in zip(frames, frames[1:])]
    assert lengths == pytest.approx([0.4, 0.2, 0.1, 0.05], rel=1e-4)


def test_the_confident_stop_rule_freezes_each_trajectory_at_its_confident_point():
    clf = Linear(0)
    guided = Guided(clf, Recipe(("x",), stop="confident", confident_prob=0.5))
    x0 = np.stack([np.full((28, 28), 0.5, np.float32), np.full((28, 28), 0.3, np.float32)])
    frames = list(traverse([guided, clf], x0, 3, TraversalConfig(steps=60, step_size=0.3)))
    p = np.stack([f.probs[0, :, 3] for f in frames])
    for i in range(2):
        conf = realism.confident_point(p[:, i, None].repeat(10, 1), 3, 0.5)
        assert conf is not None and conf < len(frames) - 1
        after = np.stack([f.images[0, i] for f in frames[conf:]])
        assert np.array_equal(after, np.broadcast_to(after[0], after.shape))  # frozen from there on
        assert frames[conf - 1].done[0, i] == False and frames[conf].done[0, i]  # noqa: E712
        assert not frames[-1].done[1].any()  # the plain model beside it never stops


class ShrinkPrior(nn.Module):
    """A "denoiser" whose answer depends on σ: D(x, σ) = (1 − σ)·x (σ a float or one per image)."""

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(len(x)).view(-1, 1, 1, 1)
        return (1 - s) * x


def test_a_finish_denoises_what_the_stop_rule_stops_at_each_sigma_then_freezes_it():
    clf = Linear(0)
    x0 = np.stack([np.full((28, 28), 0.5, np.float32), np.full((28, 28), 0.3, np.float32)])
    plain = Guided(clf, Recipe(("x",), prior="p", stop="confident", confident_prob=0.5), ShrinkPrior())
    finished = Guided(clf, Recipe(("x",), prior="p", stop="confident", confident_prob=0.5,
                                  finish_sigmas=(0.3, 0.1)), ShrinkPrior())
    a = list(traverse([plain], x0, 3, TraversalConfig(steps=60, step_size=0.3)))
    b = list(traverse([finished], x0, 3, TraversalConfig(steps=60, step_size=0.3)))
    for i in range(2):
        stop = next(t for t, f in enumerate(a) if f.done[0, i])
        assert stop < 50
        assert np.array_equal(b[stop].images[0, i], a[stop].images[0, i])  # the same run up to its stop
        assert not b[stop].done[0, i] and not b[stop + 1].done[0, i] and b[stop + 2].done[0, i]
        np.testing.assert_allclose(b[stop + 1].images[0, i], 0.7 * a[stop].images[0, i], atol=1e-6)
        np.testing.assert_allclose(b[stop + 2].images[0, i], 0.9 * 0.7 * a[stop].images[0, i], atol=1e-6)
        assert all(np.array_equal(f.images[0, i], b[stop + 2].images[0, i]) for f in b[stop + 2:])  # frozen


class LinearCritic(nn.Module):
    """A realism critic whose logit is a fixed ramp over the pixels: its gradient is the ramp."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.linspace(-1.0, 1.0, 784).view(1, 1, 28, 28)

    def forward(self, x, sigma=None):
        return (x * self.w).flatten(1).sum(1)


class Aligned(Linear):
    """Linear(0) with class 3's weights along LinearCritic's ramp: its step raises p(3)."""

    def __init__(self) -> None:
        super().__init__(0)
        ramp = LinearCritic().w.flatten()
        self.w.data[3] = 2.0 * ramp / ramp.norm()


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["raises-p-kept", "lowers-p-dropped"])
def test_a_critic_finish_steps_up_the_critic_then_denoises_and_is_kept_only_where_p_target_holds(sign):
    clf = Aligned()
    x0 = np.stack([np.full((28, 28), 0.5, np.float32), np.full((28, 28), 0.3, np.float32)])
    settings = {"prior": "p", "stop": "confident", "confident_prob": 0.5, "finish_sigmas": (0.3, 0.1)}
    finished = Guided(clf, Recipe(("x",), **settings), ShrinkPrior())
    critic = LinearCritic()
    critic.w = sign * critic.w
    refined = Guided(clf, Recipe(("x",), **settings, critic="c", critic_steps=4, critic_step=0.5), ShrinkPrior(),
                     critic=critic)
    a = list(traverse([finished], x0, 3, TraversalConfig(steps=60, step_size=0.3)))
    b = list(traverse([refined], x0, 3, TraversalConfig(steps=60, step_size=0.3)))
    unit = (critic.w / critic.w.norm())[0, 0].numpy()
    for i in range(2):
        end = next(t for t, f in enumerate(a) if f.done[0, i])  # the cascade's last frame
        assert np.array_equal(b[end].images[0, i], a[end].images[0, i]) and not b[end].done[0, i]
        y = a[end].images[0, i]
        for _ in range(4):
            y = np.clip(y + 0.5 * unit, 0.0, 1.0)
        stepped = 0.9 * y  # then D(·, last σ)
        p_before, p_stepped = (float(torch.softmax(clf(torch.tensor(v)[None, None]), 1)[0, 3])
                               for v in (a[end].images[0, i], stepped))
        assert (p_stepped >= min(p_before, 0.5)) == (sign > 0)  # the case this parameter is about
        expected = stepped if sign > 0 else a[end].images[0, i]  # kept, or the frame before it stays
        np.testing.assert_allclose(b[end + 1].images[0, i], expected, atol=1e-5)
        assert b[end + 1].done[0, i]
        assert all(np.array_equal(f.images[0, i], b[end + 1].images[0, i]) for f in b[end + 1:])  # frozen
        assert b[end + 1].probs[0, i, 3] >= min(b[end].probs[0, i, 3], 0.5) - 1e-6  # never less sure
    logit = critic(torch.tensor(b[-1].images[0, 0])[None, None]) - critic(torch.tensor(a[-1].images[0, 0])[None, None])
    assert (float(logit) > 0) == (sign > 0)  # moved toward what the critic calls real, where kept


class MeanBelow(nn.Module):
    """Class 3's logit 200·(threshold − mean pixel), the others 0: p(3) falls as ink is added."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        logits[:, 3] = 200.0 * (self.threshold - x.flatten(1).mean(1))
        return logits


class InkCritic(nn.Module):
    """Calls more ink more real: its normalized gradient adds step/28 to every pixel."""

    def forward(self, x, sigma=None):
        return x.flatten(1).sum(1)


@pytest.mark.parametrize("above, kept", [(0.1, 8), (0.065, 4), (0.045, 2), (0.02, 0)])
def test_a_critic_step_that_costs_p_target_falls_back_to_half_then_a_quarter_of_its_steps(above, kept):
    from trav_gui.engine.core.steps import L2Step

    class Same(nn.Module):
        def forward(self, x, sigma):
            return x

    recipe = Recipe(("x",), prior="p", stop="confident", confident_prob=0.5, finish_sigmas=(0.1,),
                    critic="c", critic_steps=8, critic_step=0.28)  # each step: +0.01 on every pixel
    guided = Guided(MeanBelow(0.3 + above), recipe, Same(), critic=InkCritic())
    x = torch.full((1, 1, 28, 28), 0.3)
    run = guided.start(1, torch.device("cpu"), x0=x, targets=torch.tensor([3]))
    run.finish_step[:] = 1  # past the last σ: the next step is the critic's
    out = run.advance(L2Step(0.1), x, x, torch.zeros_like(x), 100)
    assert run.critic_kept.tolist() == [kept]
    np.testing.assert_allclose(out.numpy(), np.full((1, 1, 28, 28), 0.3 + 0.01 * kept, np.float32), atol=1e-5)
    p = torch.softmax(guided(out), 1)[0, 3]
    assert kept == 0 or p >= 0.5  # what it keeps holds p(target)


def test_critic_pull_steps_confident_trajectories_up_the_critic_and_leaves_the_others_alone():
    """``critic_pull`` 0.5: after the classifier's step a confident trajectory also moves 0.5 × the step's
    size along the critic's normalized gradient (LinearCritic's ramp); one not yet confident does not."""
    from trav_gui.engine.core.steps import L2Step

    def advanced(pull: float) -> torch.Tensor:
        recipe = Recipe(("x",), prior="p", stop="confident", finish_sigmas=(0.1,), critic="c", critic_pull=pull,
                        step_scale=2.0)
        guided = Guided(Linear(0), recipe, ShrinkPrior(), critic=LinearCritic())
        run = guided.start(2, torch.device("cpu"), x0=x, targets=torch.tensor([3, 3]))
        run.confident[:] = torch.tensor([True, False])
        return run.advance(L2Step(0.1), x, x, grad, 5)

    x = torch.full((2, 1, 28, 28), 0.5)
    grad = torch.randn((2, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    plain, pulled = advanced(0.0), advanced(0.5)
    unit = LinearCritic().w / LinearCritic().w.norm()
    step = (grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)) * 0.2  # the pull's step: 0.1 × step_scale 2
    np.testing.assert_allclose(plain.numpy(), (x + step).clamp(0, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(pulled[0].numpy(), (x[0] + step[0] + 0.5 * 0.2 * unit[0]).clamp(0, 1).numpy(),
                               atol=1e-6)
    np.testing.assert_array_equal(pulled[1].numpy(), plain[1].numpy())  # not yet confident: the target alone
    assert float(LinearCritic()(pulled[:1]) - LinearCritic()(plain[:1])) > 0
    # the adversarial variant: without a prior's pull after it, the critic's step is projected into the ball too
    recipe = Recipe(("x",), prior="p", stop="confident", finish_sigmas=(0.1,), critic="c", critic_pull=5.0)
    run = Guided(Linear(0), recipe, ShrinkPrior(), critic=LinearCritic()).start(
        2, torch.device("cpu"), x0=x, targets=torch.tensor([3, 3]))
    run.confident[:] = True
    out = run.advance(L2Step(0.1, eps=0.15), x, x, grad, 5)
    assert float((out - x).flatten(1).norm(dim=1).max()) <= 0.15 + 1e-5


def test_critic_pull_is_refused_without_a_critic_and_left_out_of_recipes_without_it():
    base = {"models": ["robust"], "prior": "p", "stop": "confident", "finish_sigmas": [0.1]}
    with pytest.raises(RecipeError, match="critic_pull needs a critic"):
        Recipe.from_dict({**base, "critic_pull": 0.3})
    for bad in (-0.1, 11.0, True, "0.3"):
        with pytest.raises(RecipeError, match="critic_pull must be"):
            Recipe.from_dict({**base, "critic": "c", "critic_pull": bad})
    assert "critic_pull" not in Recipe.from_dict({**base, "critic": "c"}).to_dict()  # fingerprints as before
    pulled = Recipe.from_dict({**base, "critic": "c", "critic_pull": 0.3, "retry": {"critic_pull": 0.0}})
    assert pulled.to_dict()["critic_pull"] == 0.3
    assert "0.3 x the step up critic c's realism" in describe(pulled)
    assert pulled.retry_recipe().critic_pull == 0.0 and pulled.first_pull().critic_pull == 0.3


def test_a_critic_recipe_needs_the_run_s_targets():
    recipe = Recipe(("x",), prior="p", stop="confident", finish_sigmas=(0.1,), critic="c")
    guided = Guided(Linear(0), recipe, ShrinkPrior(), critic=LinearCritic())
    with pytest.raises(RecipeError, match="needs the run's targets"):
        guided.start(2, torch.device("cpu"))
    assert guided.start(2, torch.device("cpu"), targets=torch.tensor([3, 4])).targets.tolist() == [3, 4]


def test_a_blurred_critic_sees_shape_only_and_its_card_rebuilds_it(tmp_path):
    from trav_gui.engine.models.priors import RealismCritic

    torch.manual_seed(0)
    sharp = RealismCritic()
    blurred = RealismCritic(blur=1.0)
    blurred.load_state_dict(sharp.state_dict())  # the blur is no weight: a sharp critic's file loads
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(blurred(x), sharp(blurred.blurred(x)))
    assert not torch.allclose(blurred(x), sharp(x))
    # A checkerboard is all texture: blurred it is nearly flat, so the critic can hardly see it ...
    board = (torch.arange(28).view(-1, 1) + torch.arange(28)).remainder(2).float().view(1, 1, 28, 28)
    assert (blurred.blurred(board)[..., 3:-3, 3:-3] - 0.5).abs().max() < 0.01  # away from the replicated edges
    # ... and its input gradient, a step of the finish, is smooth: little of it changes sign pixel to pixel.
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    g_sharp, = torch.autograd.grad(sharp(x).sum(), x)
    g_blur, = torch.autograd.grad(blurred(x).sum(), x)

    def roughness(g):
        return float((g[..., 1:] - g[..., :-1]).abs().sum() / g.abs().sum())

    assert roughness(g_blur) < 0.5 * roughness(g_sharp)
    out = tmp_path / "c.safetensors"
    save_prior(blurred, out, {"prior": "critic", "dataset": "mnist", "blur": 1.0})
    loaded, card = load_prior(out)
    assert card.blur == 1.0 and loaded.blur == 1.0
    assert torch.allclose(loaded(x.detach()), blurred(x.detach()))
    save_prior(sharp, out, {"prior": "critic", "dataset": "mnist"})
    assert load_prior(out)[0].blur == 0.0  # a card without "blur": a sharp critic, as every shipped one
    with pytest.raises(ValueError, match="blur"):
        RealismCritic(blur=-1.0)


def test_a_recipe_without_a_critic_keeps_its_settings_and_a_critic_and_a_denoiser_are_not_swapped(tmp_path):
    from trav_gui.engine.models.priors import RealismCritic
    from trav_gui.paths import priors_dir

    shipped = json.loads((models_dir() / "realistic-stochastic.recipe").read_text())
    assert Recipe.from_dict(shipped).to_dict() == {**Recipe.from_dict(shipped).to_dict(), **shipped}
    plain = {k: v for k, v in shipped.items() if k not in ("critic", "critic_steps", "critic_step")}
    assert plain != shipped and Recipe.from_dict(plain).to_dict() == {**Recipe.from_dict(plain).to_dict(), **plain}
    assert "critic" not in Recipe.from_dict(plain).to_dict()  # so the fingerprints of maps made without one hold
    critic = tmp_path / "c.safetensors"
    save_prior(RealismCritic(), critic, {"prior": "critic", "dataset": "mnist"})
    denoiser = str(priors_dir() / "score-mnist.safetensors")
    base = {"models": ["robust"], "stop": "confident", "finish_sigmas": [0.1]}
    assert load_recipe(Recipe.from_dict({**base, "prior": denoiser, "critic": str(critic)})).critic is not None
    with pytest.raises(RecipeError, match="must be a realism critic"):
        load_recipe(Recipe.from_dict({**base, "prior": denoiser, "critic": denoiser}))
    with pytest.raises(RecipeError, match="must be a denoiser"):
        load_recipe(Recipe.from_dict({**base, "prior": str(critic)}))


def test_a_finish_stays_in_the_adversarial_variants_ball():
    x0 = np.full((28, 28), 0.5, np.float32)
    guided = Guided(Linear(0), Recipe(("x",), prior="p", stop="confident", confident_prob=0.5,
                                      finish_sigmas=(0.9, 0.5)), ShrinkPrior())  # shrinks far out of the ball
    frames = list(traverse([guided], x0, 3, TraversalConfig(steps=200, step_size=0.3, eps=4.0)))
    assert frames[-1].done[0, 0]
    assert not np.array_equal(frames[-1].images, frames[-3].images)  # the finish moved it
    assert max(f.l2[0, 0] for f in frames) <= 4.0 + 1e-4


def test_a_sampling_finish_starts_from_noise_around_the_stop_frame_and_is_reproducible():
    from trav_gui.engine.data.datasets import test_images

    x, labels = test_images("mnist", 4)
    recipe = Recipe(("robust",), prior="score-mnist", prior_weight=0.15, sigma_max=0.5, sigma_min=0.3,
                    anneal_steps=5, step_scale=3.0, stop="confident", centre=True,
                    finish_sigmas=(0.5, 0.2, 0.05), finish_noise=True)
    config = TraversalConfig(steps=150, step_size=0.1, seed=3)
    runs = [list(traverse([load_recipe(recipe)], x, (labels + 1) % 10, config)) for _ in range(2)]
    other = list(traverse([load_recipe(recipe)], x, (labels + 1) % 10, TraversalConfig(steps=150, step_size=0.1, seed=4)))
    assert all(np.array_equal(f.images, g.images) for f, g in zip(*runs))  # the same seed, the same frames
    last = runs[0][-1]
    assert last.done.all() and len(runs[0]) < 151
    assert not np.array_equal(last.images, other[-1].images)  # the noise is the seed's
    for i in range(4):
        stop = next(t for t, f in enumerate(runs[0]) if f.done[0, i]) - 3
        before, first = runs[0][stop].images[0, i], runs[0][stop + 1].images[0, i]
        # The first finish frame is the prior's estimate from the stop frame plus noise of σ 0.5:
        # near it (the noise is gone), not equal to it.
        assert 0.05 < np.linalg.norm(first - before) < 0.5 * np.linalg.norm(0.5 * np.ones(784))
        assert not runs[0][stop].done[0, i] and not runs[0][stop + 2].done[0, i]


def test_the_plateau_rule_stops_once_confident_and_the_prior_correction_stops_shrinking():
    # The pull toward 0.5 balances the step: x converges, and so does the correction.
    guided = Guided(Linear(0), Recipe(("x",), prior="p", prior_weight=0.1, stop="plateau", patience=3,
                                      anneal_steps=2, confident_prob=0.9), ConstantPrior(0.5))
    frames = _frames(guided, np.full((28, 28), 0.5, np.float32), 3, steps=300, step_size=0.5)
    assert frames[-1].done[0, 0] and len(frames) < 301
    p = np.array([f.probs[0, 0, 3] for f in frames])
    first_done = next(i for i, f in enumerate(frames) if f.done[0, 0])
    assert p[first_done] >= 0.9 and (p[:first_done] < 0.9).sum() > 0  # never before it is confident
    assert first_done >= realism.confident_point(np.array([f.probs[0, 0] for f in frames]), 3)


def test_a_recipe_with_a_judge_or_a_recipe_among_its_models_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="judge"):
        load_recipe(Recipe(("robust", "judge")))
    with pytest.raises(RecipeError, match="different data sets"):
        load_recipe(Recipe(("robust", "fashion-robust")))
    (tmp_path / "inner.recipe").write_text(json.dumps({"models": ["robust"]}))
    with pytest.raises(RecipeError, match="not other recipes"):
        load_recipe(Recipe((str(tmp_path / "inner.recipe"),)))


def test_a_recipe_file_loads_as_a_model_and_its_card_must_match(tmp_path):
    path = tmp_path / "mine.recipe"
    path.write_text(json.dumps({"models": ["robust", "standard"], "stop": "confident"}))
    model = load_model(path)
    assert isinstance(model, Guided) and isinstance(model.classifier, Ensemble)
    (tmp_path / "mine.json").write_text(json.dumps({"name": "mine", "sha256": "0" * 64}))
    with pytest.raises(ModelLoadError, match="other weights"):
        load_model(path)
    (tmp_path / "mine.json").write_text(json.dumps({"name": "mine", "sha256": sha256_of(path)}))
    assert isinstance(load_model(path), Guided)
    path.write_text('{"models": ["robust"], "stop": "sometimes"}')
    (tmp_path / "mine.json").unlink()
    with pytest.raises(ModelLoadError, match="stop") as refused:
        load_model(path)
    assert str(refused.value).count("mine.recipe") == 1  # the file is named once
    path.write_text('{"models": ["no-such-model"]}')  # a member's error names the recipe too
    with pytest.raises(ModelLoadError, match="^mine.recipe: .*no-such-model"):
        load_model(path)


@pytest.mark.parametrize("cls", [ScoreUNet, DenoisingAE])
def test_priors_map_images_to_images_and_refuse_a_changed_file(cls, tmp_path):
    net = cls()
    x = torch.rand(4, 1, 28, 28)
    assert net(x, torch.full((4,), 0.2)).shape == x.shape and net(x, 0.1).shape == x.shape
    card = save_prior(net, tmp_path / "p.safetensors", {"prior": "score" if cls is ScoreUNet else "dae",
                                                        "dataset": "mnist"})
    loaded, read = load_prior(tmp_path / "p.safetensors")
    assert read.sha256 == card.sha256 and read.role == "prior"
    assert torch.allclose(loaded(x, 0.2), net(x, 0.2), atol=1e-6)
    (tmp_path / "p.safetensors").write_bytes((tmp_path / "p.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(PriorLoadError, match="sha256"):
        load_prior(tmp_path / "p.safetensors")
    with pytest.raises(PriorLoadError, match="no prior"):
        load_prior("no-such-prior")


def test_score_model_noise_parametrization_gives_identity_at_zero_noise_prediction():
    net = ScoreUNet()
    for p in net.dec1[-1].parameters():
        nn.init.zeros_(p)  # predicts zero noise: D(x, σ) = x
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(net(x, 0.3), x)


def test_ssim_known_answers():
    x = np.random.default_rng(0).random((2, 28, 28)).astype(np.float32)
    assert realism.ssim(x, x) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert abs(float(realism.ssim(x[0], x[1]))) < 0.1  # unrelated noise
    assert float(realism.ssim(x[0], np.clip(x[0] + 0.02, 0, 1))) > 0.95
    assert float(realism.ssim(x[0], 1 - x[0])) < -0.5  # inverted structure


def test_noise_growth_and_held_out_reference_know_real_digits():
    assert realism.noise_growth(np.array([1.6, 1.0]), np.array([1.2, 1.0])) == pytest.approx([4 / 3, 1.0])
    held = realism.held_out_reference("mnist")
    from trav_gui.engine.data.datasets import test_set

    images, labels = test_set("mnist")
    real = images[1000:2000].astype(np.float32) / 255.0
    ratios = np.concatenate([held.nearest(real[labels[1000:2000] == c], c)[0] for c in range(10)])
    assert np.median(ratios) == pytest.approx(1.0, abs=0.02)  # typical by construction
    assert np.mean(ratios <= np.repeat(held.p90, np.bincount(labels[1000:2000], minlength=10))) == pytest.approx(
        0.9, abs=0.02)
    # A start image is not in the held-out bank: its distance is never 0.
    start = images[:1].astype(np.float32) / 255.0
    assert held.nearest(start, int(labels[0]))[0][0] > 0.3


def test_the_shipped_realistic_recipe_traverses_from_the_command_line_like_a_model(tmp_path):
    from trav_gui.cli import main
    from trav_gui.engine.models.loading import list_models

    card = next(c for c in list_models() if c.name == "realistic")
    assert card.card.kind == "recipe" and card.card.sha256 == sha256_of(card.path)
    out = tmp_path / "run"
    assert main(["traverse", "--model", "realistic", "--model", "robust", "--index", "15", "--target", "0",
                 "--steps", "40", "--out", str(out)]) == 0
    z, plain = np.load(out / "realistic.npz"), np.load(out / "robust.npz")
    assert z["judge_probs"].shape == (len(z["step"]), 10) and np.isfinite(z["nn_ratio"]).all()
    assert not np.allclose(z["frames"][-1], plain["frames"][-1])  # its own steps, not robust's
    record = json.loads((out / "run.json").read_text())
    assert "realistic" in record["extra"]["realism"]


def test_the_shipped_stochastic_recipe_is_realistic_with_a_noisy_pull_and_replays_its_seed(tmp_path):
    """`realistic-stochastic` is the shipped `realistic` with the pull's noise drawn afresh from sigma 1.0 and
    steps 2x the step size (its retry's pull; `realistic`'s critic finish, without its retry), as its card
    describes it; its frames depend on the seed (`realistic`'s do not) and replay for the same one."""
    from trav_gui.cli import main
    from trav_gui.engine.models.loading import list_models

    entries = {e.name: e for e in list_models()}
    entry = entries["realistic-stochastic"]
    assert entry.card.kind == "recipe" and entry.card.sha256 == sha256_of(entry.path)
    settings = json.loads(entry.path.read_text())
    plain = json.loads(entries["realistic"].path.read_text())
    assert settings["renoise"] is True and settings["sigma_max"] == 1.0 and settings["step_scale"] == 2.0
    assert plain["critic"] == settings["critic"] == "critic-mnist"
    first_pull = {k: v for k, v in plain.items() if k not in ("retry", "retry_below")}
    # the retry's settings, but not its longer critic finish (a retry's own; this recipe keeps the first pull's)
    pull = {k: v for k, v in plain["retry"].items() if k != "critic_steps"}
    assert pull.get("critic_pull") == 0.0 < plain["critic_pull"]  # the critic steers `realistic`'s first pull only
    # (read as recipes: a critic_pull of 0 is the setting left out)
    assert Recipe.from_dict(settings).to_dict() == Recipe.from_dict({**first_pull, **pull}).to_dict()

    def frames(name: str, seed: int) -> np.ndarray:
        out = tmp_path / f"{name}-{seed}"
        assert main(["traverse", "--model", name, "--index", "3", "--target", "6", "--steps", "30",
                     "--seed", str(seed), "--out", str(out)]) == 0
        return np.load(out / f"{name}.npz")["frames"]

    once, again = frames("realistic-stochastic", 0), frames("realistic-stochastic", 0)
    np.testing.assert_array_equal(once, again)
    assert not np.allclose(once[-1], frames("realistic-stochastic", 1)[-1], atol=1e-3)
    np.testing.assert_array_equal(frames("realistic", 0), frames("realistic", 1))  # no noise: the seed is unused


def test_a_recipe_is_added_as_a_user_model_listed_traversed_and_removed(tmp_path, user_models, capsys):
    from trav_gui.cli import main
    from trav_gui.engine.models.user_models import list_user_models

    path = tmp_path / "mine.recipe"
    path.write_text(json.dumps({"models": ["robust"], "step_scale": 2.0}))
    assert main(["models", "add", str(path)]) == 0
    card = next(c for c in list_user_models() if c.name == "mine")
    assert card.card.kind == "recipe" and card.dataset == "mnist" and "steps x 2" in card.card.description
    assert card.card.evaluation.clean_accuracy == pytest.approx(0.9876)  # robust's, measured again
    assert main(["traverse", "--model", "mine", "--index", "3", "--target", "1", "--steps", "5",
                 "--out", str(tmp_path / "run")]) == 0
    z = np.load(tmp_path / "run" / "mine.npz")
    assert 0.15 < z["l2"][1] <= 0.2 + 1e-5  # its own step: 2 x the run's 0.1 (less where pixels clip)
    bad = tmp_path / "bad.recipe"
    bad.write_text(json.dumps({"models": ["robust", "judge"]}))
    assert main(["models", "add", str(bad)]) != 0
    assert "judge" in capsys.readouterr().err
    assert main(["models", "remove", "mine"]) == 0
    assert not any(c.name == "mine" for c in list_user_models())


def test_centring_offsets_bring_the_ink_to_the_centre_and_shift_batch_moves_it_there():
    from trav_gui.engine.core.centring import centring_offsets, shift_batch
    from trav_gui.engine.data.preprocess import shift_images

    x = torch.zeros(4, 1, 28, 28)
    x[0, 0, 10, 20] = 1.0  # ink up and to the right: moves down 4 and left 6
    x[1, 0, 13:15, 13:15] = 1.0  # centre of mass (13.5, 13.5): rounds to a move of (0, 0) or (1, 1)
    x[2, 0, 0, 0] = 1.0  # far in a corner: capped at the largest move
    off = centring_offsets(x, 6)
    assert off[0].tolist() == [4, -6] and off[2].tolist() == [6, 6] and off[3].tolist() == [0, 0]  # 3: no ink
    assert set(off[1].tolist()) <= {0, 1}
    moved = shift_batch(x, off)
    assert moved[0, 0, 14, 14] == 1 and moved[0].sum() == 1
    for i in range(4):
        assert np.array_equal(moved[i].numpy(), shift_images(x[i].numpy(), *off[i].tolist()))
    # Gradients come back through the move to where the ink stands.
    leaf = x.clone().requires_grad_(True)
    (shift_batch(leaf, off)[:, :, 14, 14]).sum().backward()
    assert leaf.grad[0, 0, 10, 20] == 1 and leaf.grad[0].sum() == 1


def test_a_centring_recipe_sees_a_moved_digit_as_it_sees_it_in_place():
    from trav_gui.engine.core.centring import centring_offsets
    from trav_gui.engine.data import datasets as data
    from trav_gui.engine.data.preprocess import shift_images

    images, _ = data.test_digits()
    robust = load_model("robust")
    centred = Guided(robust, Recipe(("robust",), centre=True))
    # A digit whose centre of mass is within 0.3 px of the field's centre (no rounding tie).
    x = torch.from_numpy(images[:50].astype(np.float32) / 255.0)[:, None]
    ink = x.sum(1)
    cy = (ink.sum(2) * torch.arange(28.0)).sum(1) / ink.sum((1, 2))
    cx = (ink.sum(1) * torch.arange(28.0)).sum(1) / ink.sum((1, 2))
    i = int(torch.nonzero(((cy - 14).abs() < 0.3) & ((cx - 14).abs() < 0.3))[0])
    assert centring_offsets(x[i:i + 1], 6).tolist() == [[0, 0]]
    digit = images[i].astype(np.float32) / 255.0
    moved = torch.from_numpy(shift_images(digit, 3, -3))[None, None]
    with torch.no_grad():
        in_place = robust(torch.from_numpy(digit)[None, None])
        assert torch.allclose(centred(moved), centred(torch.from_numpy(digit)[None, None]))
        assert torch.allclose(centred(moved), in_place, atol=1e-5)
        assert not torch.allclose(robust(moved), in_place, atol=1e-2)  # the plain model sees it differently
    # A traversal of the moved digit keeps the frame where the digit stands.
    frames = _frames(centred, moved, 3, steps=3, step_size=0.5)
    assert frames[-1].images[0, 0, :3].sum() < 1e-6  # its top rows (emptied by the move) stay nearly blank


def test_a_centring_run_keeps_the_move_of_its_start_for_the_whole_run():
    from trav_gui.engine.core.centring import centring_offsets, shift_batch

    clf = Linear(0)
    guided = Guided(clf, Recipe(("x",), centre=True, max_centre_shift=6))
    x0 = torch.zeros(2, 1, 28, 28)
    x0[0, 0, 8:12, 8:12] = 1.0  # ink up-left: centred by moving it down-right
    x0[1, 0, 12:16, 12:16] = 1.0  # already centred
    run = guided.start(2, torch.device("cpu"), 0, x0=x0)
    assert run.offsets.tolist() == centring_offsets(x0, 6).tolist() and run.offsets[1].tolist() == [0, 0]
    later = x0.clone()
    later[0, 0, 20:24, 20:24] = 1.0  # ink added far away moves the centre of mass, not the run's move
    assert centring_offsets(later, 6)[0].tolist() != run.offsets[0].tolist()
    assert torch.equal(run.forward(later), clf(shift_batch(later, run.offsets)))
    assert torch.equal(guided.start(2, torch.device("cpu")).forward(later), guided(later))  # no starts: per image


def test_the_shipped_realistic_recipe_centres_its_starts_and_that_moves_no_centred_test_digit():
    """Its measured figures on centred test digits hold: centring leaves their frames as they were."""
    from trav_gui.engine.core.centring import centring_offsets
    from trav_gui.engine.data import datasets as data

    recipe = load_model("realistic")
    assert recipe.recipe.centre
    images, _ = data.test_digits()
    x = torch.from_numpy(images[:1000].astype(np.float32) / 255.0)[:, None]
    assert not centring_offsets(x, recipe.recipe.max_centre_shift).any()


def test_the_shipped_fashion_recipe_loads_with_its_fashion_prior_and_traverses_garments(tmp_path):
    """fashion-realistic: fashion-robust, the Fashion score model and a stop rule, on garments."""
    from trav_gui.cli import main
    from trav_gui.engine.models.loading import list_models

    entry = next(e for e in list_models() if e.name == "fashion-realistic")
    assert entry.card.kind == "recipe" and entry.dataset == "fashion-mnist"
    assert entry.card.sha256 == sha256_of(entry.path)
    model = load_model("fashion-realistic")
    assert isinstance(model, Guided) and model.dataset == "fashion-mnist"
    assert model.recipe.prior == "score-fashion-mnist" and model.recipe.stop is not None
    _, prior_card = load_prior("score-fashion-mnist")
    assert prior_card.dataset == "fashion-mnist"
    # The recipe's figures in its card are the Fashion world's: its judge, its ceiling.
    realism = entry.card.to_json()["evaluation"]["realism"]
    assert set(realism["success_by_judge"]) == {"fashion-judge", "fashion-judge-standard"}
    assert 0 < realism["ceiling"] <= 1
    out = tmp_path / "run"
    assert main(["traverse", "--model", "fashion-realistic", "--model", "fashion-robust", "--index", "0",
                 "--target", "3", "--steps", "30", "--out", str(out)]) == 0
    z, plain = np.load(out / "fashion-realistic.npz"), np.load(out / "fashion-robust.npz")
    assert z["probs"].shape[1] == 10 and np.isfinite(z["nn_ratio"]).all()
    assert not np.allclose(z["frames"][-1], plain["frames"][-1])  # the prior pulls: its own steps
    record = json.loads((out / "run.json").read_text())
    assert record["extra"]["dataset"] == "fashion-mnist"


@pytest.mark.parametrize("stop, finish, noise, critic", [
    ("confident", (), False, None), ("plateau", (), False, None), ("plateau", (0.3, 0.1), False, None),
    ("confident", (0.5, 0.1), True, None), ("confident", (0.3, 0.1), False, "critic-mnist")])
def test_frozen_trajectories_are_not_computed_and_the_frames_stay_the_same(stop, finish, noise, critic, monkeypatch):
    """Issue 23: a batch whose trajectories stop one by one computes only the moving ones (the
    classifiers and the prior), and its frames are those of computing every one at every step."""
    from trav_gui.engine.core import traversal as engine
    from trav_gui.engine.data.datasets import test_images

    x, labels = test_images("mnist", 12)
    targets = (labels + 1) % 10
    recipe = Recipe(("robust",), prior="score-mnist", prior_weight=0.15, sigma_max=0.5, sigma_min=0.3,
                    anneal_steps=10, step_scale=3.0, stop=stop, patience=3, centre=True,
                    finish_sigmas=finish, finish_noise=noise, critic=critic)
    config = TraversalConfig(steps=40, step_size=0.1)

    def run(skip: bool):
        monkeypatch.setattr(engine, "SKIP_FROZEN", skip)
        guided = load_recipe(recipe)
        seen = {"classifier": 0, "prior": 0}
        guided.classifier.register_forward_hook(lambda m, a, o: seen.__setitem__("classifier", seen["classifier"] + len(a[0])))
        guided.prior.register_forward_hook(lambda m, a, o: seen.__setitem__("prior", seen["prior"] + len(a[0])))
        frames = list(traverse([guided], x, targets, config))
        return frames, seen

    before, seen_all = run(False)
    after, seen_moving = run(True)
    assert len(before) == len(after) and bool(before[-1].done.any())  # some stopped early
    for a, b in zip(before, after):
        np.testing.assert_allclose(a.images, b.images, atol=1e-5)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
        np.testing.assert_array_equal(a.done, b.done)
    assert seen_moving["classifier"] < seen_all["classifier"]
    # With a finish, a recipe's own steps skip what it froze either way: the prior never runs more.
    assert seen_moving["prior"] <= seen_all["prior"] if finish else seen_moving["prior"] < seen_all["prior"]


@pytest.mark.parametrize("settings", [{"renoise": True, "sigma_max": 1.0},
                                      {"finish_sigmas": (0.5, 0.2, 0.05), "finish_noise": True}])
def test_a_stochastic_recipe_gives_a_start_the_same_frames_alone_as_in_a_batch(settings):
    """A gallery cell opened in the Traversal tab replays what the cell showed: a trajectory's noise is
    drawn from its own generator (the run's seed and its start), not from one shared by the batch."""
    from trav_gui.engine.data.datasets import test_images

    x, labels = test_images("mnist", 4)
    targets = (labels + 1) % 10
    settings = dict(settings)  # the parameter is shared between runs: not changed here
    recipe = Recipe(("robust",), prior="score-mnist", prior_weight=0.15, sigma_max=settings.pop("sigma_max", 0.5),
                    sigma_min=0.3, anneal_steps=5, step_scale=3.0, stop="confident", centre=True, **settings)
    config = TraversalConfig(steps=60, step_size=0.1, seed=2)
    batch = list(traverse([load_recipe(recipe)], x, targets, config))
    alone = list(traverse([load_recipe(recipe)], x[2:3], targets[2:3], config))
    assert len(alone) <= len(batch) and alone[-1].done.all()
    for a, b in zip(alone, batch):
        np.testing.assert_allclose(a.images[0, 0], b.images[0, 2], atol=1e-5)
    other = list(traverse([load_recipe(recipe)], x[2:3], targets[2:3], TraversalConfig(steps=60, step_size=0.1, seed=3)))
    assert not np.allclose(other[-1].images, alone[-1].images, atol=1e-3)  # the noise is the seed's
