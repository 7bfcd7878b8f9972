"""Steps and projections, checked on tensors whose geometry is known exactly."""

import pytest
import torch

from trav_gui.engine.core.steps import L2Step, LinfStep, make_step, per_sample_norm


def _x(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.25 + 0.5 * torch.rand(n, 1, 28, 28, generator=g)


def test_l2_step_moves_exactly_step_size_before_clipping():
    x = _x()
    grad = torch.randn_like(x) * torch.tensor([1e-6, 1.0, 3.0, 1e4]).view(-1, 1, 1, 1)
    moved = L2Step(0.37).step(x, grad)
    torch.testing.assert_close(per_sample_norm(moved - x, 2), torch.full((4,), 0.37))
    # and in the gradient's direction
    cos = torch.nn.functional.cosine_similarity((moved - x).flatten(1), grad.flatten(1))
    torch.testing.assert_close(cos, torch.ones(4))


def test_linf_step_moves_each_pixel_by_at_most_step_size():
    x = _x()
    grad = torch.randn_like(x)
    grad[0, 0, :5] = 0.0
    moved = LinfStep(0.01).step(x, grad)
    diff = (moved - x).abs()
    assert diff.max() <= 0.01 + 1e-7
    torch.testing.assert_close(diff[1], torch.full_like(diff[1], 0.01))
    assert diff[0, 0, :5].max() == 0  # zero gradient, no move


@pytest.mark.parametrize("cls", [L2Step, LinfStep])
def test_zero_gradient_leaves_image_unchanged_and_finite(cls):
    x = _x()
    out = cls(0.5, eps=1.0).advance(x, x, torch.zeros_like(x))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, x)


def test_l2_projection_lands_on_ball_and_keeps_inside_points():
    x0 = _x()
    far = x0 + torch.randn_like(x0)  # norm about 28
    near = x0 + 1e-3 * torch.randn_like(x0)
    step = L2Step(0.1, eps=2.0)
    torch.testing.assert_close(per_sample_norm(step.project(far, x0) - x0, 2), torch.full((4,), 2.0))
    torch.testing.assert_close(step.project(near, x0), near)


def test_linf_projection_lands_in_box():
    x0 = _x()
    out = LinfStep(0.1, eps=0.05).project(x0 + torch.randn_like(x0), x0)
    assert (out - x0).abs().max() <= 0.05 + 1e-7


@pytest.mark.parametrize("norm,p", [("l2", 2), ("linf", float("inf"))])
def test_advance_stays_in_ball_and_unit_box(norm, p):
    x0 = _x()
    step = make_step(norm, 0.8, eps=1.5 if norm == "l2" else 0.1)
    x = x0.clone()
    for _ in range(10):
        x = step.advance(x, x0, torch.randn_like(x))
    assert x.min() >= 0 and x.max() <= 1
    assert (per_sample_norm(x - x0, p) <= step.eps + 1e-5).all()


def test_random_start_is_in_ball_seeded_and_needs_eps():
    x0 = _x()
    step = L2Step(0.1, eps=2.0)
    a = step.random_start(x0, torch.Generator().manual_seed(3))
    b = step.random_start(x0, torch.Generator().manual_seed(3))
    c = step.random_start(x0, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert (per_sample_norm(a - x0, 2) <= 2.0 + 1e-5).all() and a.min() >= 0 and a.max() <= 1
    assert (per_sample_norm(a - x0, 2) > 0).all()
    with pytest.raises(ValueError, match="eps"):
        L2Step(0.1).random_start(x0)


def test_unconstrained_projection_is_identity():
    x0, x = _x(seed=1), _x(seed=2)
    assert L2Step(0.1).project(x, x0) is x


@pytest.mark.parametrize("kwargs", [dict(step_size=0), dict(step_size=-1), dict(step_size=0.1, eps=0)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        L2Step(**kwargs)


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="unknown norm"):
        make_step("l1", 0.1)
