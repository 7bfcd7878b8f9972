"""Traversal on models whose gradients are known in closed form."""

import numpy as np
import pytest
import torch

from trav_gui.engine.core.traversal import (
    Frame,
    NonFiniteOutputError,
    TraversalConfig,
    as_batch,
    stack_frames,
    traverse,
)
from trav_gui.engine.models.architectures import SmallCNN


def _start():
    return np.full((28, 28), 0.5, np.float32)


def test_unconstrained_l2_traversal_follows_the_known_gradient(linear_model):
    # For a linear model the target logit's gradient is W[t], so after k steps of size a
    # (no clipping: small steps from 0.5) the image is x0 + k a W[t] / |W[t]|.
    target, a, k = 3, 0.05, 4
    frames = list(traverse([linear_model], _start(), target,
                           TraversalConfig(steps=k, step_size=a, objective="logit")))
    assert [f.step for f in frames] == list(range(k + 1))
    w = linear_model.weight[target].view(28, 28).numpy()
    expected = 0.5 + k * a * w / np.linalg.norm(w)
    np.testing.assert_allclose(frames[-1].images[0, 0], expected, atol=1e-6)
    np.testing.assert_allclose([f.l2[0, 0] for f in frames], a * np.arange(k + 1), atol=1e-6)
    np.testing.assert_allclose(frames[0].grad_norm[0, 0], np.linalg.norm(w), rtol=1e-5)


@pytest.mark.parametrize("objective", ["logprob", "logit", "margin"])
def test_objective_increases(objective):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x0 = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    values = [f.objective[0, 0] for f in traverse([model], x0, 7,
                                                   TraversalConfig(steps=5, step_size=0.05, objective=objective))]
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_two_models_advance_in_lock_step_as_if_run_alone(two_models):
    config = TraversalConfig(steps=6, step_size=0.2)
    together = list(traverse(two_models, _start(), 5, config))
    alone = [list(traverse([m], _start(), 5, config)) for m in two_models]
    assert len(together) == 7
    for t, frame in enumerate(together):
        assert frame.step == t
        assert frame.images.shape == (2, 1, 28, 28) and frame.probs.shape == (2, 1, 10)
        for i in range(2):
            np.testing.assert_allclose(frame.images[i], alone[i][t].images[0], atol=1e-6)
            np.testing.assert_allclose(frame.probs[i], alone[i][t].probs[0], atol=1e-6)
    # the two models differ, so their paths do too
    assert not np.allclose(together[-1].images[0], together[-1].images[1])


def test_frames_are_frozen_copies(linear_model):
    frames = list(traverse([linear_model], _start(), 1, TraversalConfig(steps=2)))
    assert not np.shares_memory(frames[0].images, frames[1].images)
    with pytest.raises(ValueError):
        frames[0].images[0, 0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        frames[0].step = 5


def test_same_seed_same_run_other_seed_other_run(two_models):
    def run(seed):
        cfg = TraversalConfig(steps=3, step_size=0.1, eps=1.0, random_start=True, seed=seed)
        return stack_frames(list(traverse(two_models, _start(), 2, cfg)))["images"]

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_pgd_mode_stays_in_the_ball(linear_model):
    cfg = TraversalConfig(steps=30, step_size=0.3, eps=1.0)
    frames = list(traverse([linear_model], _start(), 4, cfg))
    assert max(f.l2.max() for f in frames) <= 1.0 + 1e-5
    assert frames[-1].l2[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_linf_traversal_moves_pixels_by_at_most_step(linear_model):
    frames = list(traverse([linear_model], _start(), 4, TraversalConfig(steps=3, step_size=0.01, norm="linf")))
    for a, b in zip(frames, frames[1:]):
        assert np.abs(b.images - a.images).max() <= 0.01 + 1e-6


def test_stop_at_prob_freezes_each_trajectory_and_ends_when_all_are_done(linear_model):
    x0 = np.stack([_start(), np.full((28, 28), 0.2, np.float32)])
    cfg = TraversalConfig(steps=500, step_size=0.5, objective="logit", stop_at_prob=0.9)
    frames = list(traverse([linear_model], x0, 6, cfg))
    last = frames[-1]
    assert last.done.all() and len(frames) < 501
    assert (last.probs[0, :, 6] >= 0.9).all()
    # a trajectory that finished earlier kept its image from then on
    first_done = [next(f.step for f in frames if f.done[0, n]) for n in range(2)]
    for n, t in enumerate(first_done):
        np.testing.assert_array_equal(frames[t].images[0, n], last.images[0, n])


class NanAfter(torch.nn.Module):
    def __init__(self, inner, bad_from_step):
        super().__init__()
        self.inner, self.calls, self.bad = inner, 0, bad_from_step

    def forward(self, x):
        out = self.inner(x)
        self.calls += 1
        return out * float("nan") if self.calls > self.bad else out


def test_nan_output_stops_the_run_and_keeps_earlier_frames(linear_model):
    kept = []
    with pytest.raises(NonFiniteOutputError) as err:
        for frame in traverse([linear_model, NanAfter(linear_model, 3)], _start(), 1, TraversalConfig(steps=10)):
            kept.append(frame)
    assert err.value.step == 3 and err.value.model_index == 1
    assert [f.step for f in kept] == [0, 1, 2]


def test_zero_gradient_is_reported_and_image_unchanged():
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.zeros(10))

        def forward(self, x):
            return self.b.expand(x.shape[0], 10) + 0 * x.flatten(1)[:, :10]

    frames = list(traverse([Flat()], _start(), 2, TraversalConfig(steps=3)))
    assert all(f.grad_norm[0, 0] == 0 for f in frames)
    np.testing.assert_array_equal(frames[-1].images, frames[0].images)


def test_batch_of_images_and_per_image_targets(linear_model):
    x0 = np.stack([_start()] * 3)
    frames = list(traverse([linear_model], x0, [0, 1, 2], TraversalConfig(steps=2, objective="logit")))
    assert frames[-1].images.shape == (1, 3, 28, 28)
    for n, t in enumerate([0, 1, 2]):
        w = linear_model.weight[t].view(28, 28).numpy()
        np.testing.assert_allclose(frames[-1].images[0, n], 0.5 + 0.2 * w / np.linalg.norm(w), atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((27, 28)), np.full((28, 28), 1.5), np.full((28, 28), np.nan)])
def test_bad_images_are_refused(bad):
    with pytest.raises(ValueError):
        as_batch(bad)


@pytest.mark.parametrize("target", [10, -1, 2.5, [1, 2]])
def test_bad_targets_are_refused(linear_model, target):
    with pytest.raises(ValueError):
        next(traverse([linear_model], _start(), target))


@pytest.mark.parametrize("kwargs, words", [
    (dict(steps=0), "steps must be between 1 and"), (dict(steps=-5), "steps must be between"),
    (dict(steps=10**9), "steps must be between"), (dict(steps=2.5), "steps must be an integer"),
    (dict(steps=True), "steps must be an integer"),
    (dict(step_size=0), "step size must be > 0"), (dict(step_size=-0.1), "step size must be > 0"),
    (dict(step_size=float("nan")), "step size must be > 0"),
    (dict(step_size=float("inf")), "step size must be > 0"), (dict(step_size=1e39), "at most 100"),
    (dict(step_size="0.1"), "step size"), (dict(step_size=True), "step size"),
    (dict(eps=0.0), "eps must be > 0"), (dict(eps=-1.0), "eps must be > 0"),
    (dict(eps=float("inf")), "eps must be > 0"), (dict(eps=float("nan")), "eps must be > 0"),
    (dict(eps=10**400), "eps must be > 0"),
    (dict(objective="nope"), "unknown objective"), (dict(objective=["logit"]), "unknown objective"),
    (dict(norm="l3"), "unknown norm"), (dict(norm=2), "norm must be"),
    (dict(stop_at_prob=1.5), "stop_at_prob"), (dict(stop_at_prob=0.0), "stop_at_prob"),
    (dict(stop_at_prob="0.9"), "stop_at_prob"),
    (dict(random_start=True), "random_start needs eps"), (dict(random_start="yes", eps=1.0), "random_start"),
    (dict(seed=-1), "seed must be"), (dict(seed=2**63), "seed must be"), (dict(seed=1.5), "seed must be"),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs, words):
    with pytest.raises(ValueError, match=words):
        TraversalConfig(**kwargs)


def test_limits_are_accepted_and_a_huge_step_stays_finite(linear_model):
    TraversalConfig(steps=100_000, seed=2**63 - 1, eps=1000.0)
    frames = list(traverse([linear_model], _start(), 1, TraversalConfig(steps=3, step_size=100.0)))
    assert all(np.isfinite(f.images).all() and f.images.min() >= 0 and f.images.max() <= 1 for f in frames)


def test_a_target_equal_to_the_start_class_is_allowed_and_climbs_further(linear_model):
    first = next(traverse([linear_model], _start(), 0))
    start_class = int(first.predictions[0, 0])
    frames = list(traverse([linear_model], _start(), start_class, TraversalConfig(steps=5, step_size=0.2)))
    p = [f.probs[0, 0, start_class] for f in frames]
    assert all(b > a for a, b in zip(p, p[1:]))  # more of the same class, step by step
    assert all(f.predictions[0, 0] == start_class for f in frames)


def test_an_empty_black_image_is_a_valid_start(linear_model):
    frames = list(traverse([linear_model], np.zeros((28, 28), np.float32), 4, TraversalConfig(steps=2)))
    assert len(frames) == 3 and frames[-1].l2[0, 0] > 0


def test_config_round_trips_through_a_dict():
    cfg = TraversalConfig(steps=7, eps=2.0, norm="linf", seed=3)
    assert TraversalConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        TraversalConfig.from_dict({"steps": 3, "bogus": 1})


def test_frame_predictions(linear_model):
    frame = next(traverse([linear_model], _start(), 0))
    assert isinstance(frame, Frame)
    assert frame.predictions.shape == (1, 1) and frame.predictions[0, 0] == frame.probs[0, 0].argmax()


def test_joint_and_per_model_autograd_give_the_same_frames(monkeypatch):
    """Small batches use one autograd call for all models, large ones a call per model."""
    from trav_gui.engine.core import traversal as tr
    from trav_gui.engine.models.architectures import SmallCNN

    torch.manual_seed(0)
    models = [SmallCNN().eval().requires_grad_(False), SmallCNN().eval().requires_grad_(False)]
    x0 = np.random.default_rng(0).uniform(0, 1, (3, 28, 28)).astype(np.float32)
    config = tr.TraversalConfig(steps=4, step_size=0.5, objective="margin")
    runs = {}
    for limit in (0, 100):
        monkeypatch.setattr(tr, "JOINT_AUTOGRAD_MAX_BATCH", limit)
        runs[limit] = tr.stack_frames(list(tr.traverse(models, x0, [1, 2, 3], config)))
    for key in ("images", "probs", "l2", "objective", "grad_norm"):
        np.testing.assert_allclose(runs[0][key], runs[100][key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert not np.array_equal(runs[0]["images"][0], runs[0]["images"][-1])  # the runs moved


def test_nan_is_reported_for_the_right_model_on_both_autograd_paths(monkeypatch):
    from trav_gui.engine.core import traversal as tr

    class NaNModel(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 10), float("nan"))

    good = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    for limit in (0, 100):
        monkeypatch.setattr(tr, "JOINT_AUTOGRAD_MAX_BATCH", limit)
        with pytest.raises(tr.NonFiniteOutputError) as info:
            list(tr.traverse([good, NaNModel()], np.zeros((2, 28, 28), np.float32), 1, tr.TraversalConfig(steps=2)))
        assert info.value.model_index == 1 and info.value.step == 0
