"""Steps on input pixels: they know geometry only, not models or losses.

One family serves the GUI's traversal, the command line, the benchmarks *and* adversarial
training (``training/``), so the robust model is trained against exactly the steps a user
watches. A step object knows three things: how to move along a gradient
(:meth:`Step.step`), how to project back into its set around the start (:meth:`Step.project`,
the identity for unconstrained traversal) and how to start at random
(:meth:`Step.random_start`). Pixels are always clipped to [0, 1].

Shapes: images ``x``, ``x0`` and gradients ``grad`` are ``(N, ...)`` float tensors with
pixels in [0, 1]; norms are taken per sample over all other dimensions.

Example
-------
>>> step = L2Step(step_size=0.5, eps=2.0)
>>> x = step.random_start(x0, generator)
>>> for _ in range(7):
...     grad = torch.autograd.grad(loss(model(x)), x)[0]
...     x = step.advance(x, x0, grad)   # step, project onto the ball, clip to [0, 1]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

__all__ = ["NORMS", "L2Step", "LinfStep", "Step", "make_step", "per_sample_norm"]


# The pixel box [0, 1]^(C·H·W) is sqrt(C·H·W) wide in L2 (28 for MNIST, 111 for 3×64×64);
# a longer step than this only overflows float32 sooner.
MAX_STEP_SIZE = 100.0
# A ball far wider than the box constrains nothing; larger radii are typing errors.
MAX_EPS = 1000.0


def _is_real(v: object) -> bool:
    """A real number that is not a bool (``True`` is not a step size)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) or (
        hasattr(v, "dtype") and getattr(v, "shape", None) == () and getattr(v.dtype, "kind", "") in "iuf")


def per_sample_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    """The ``p``-norm of each sample of ``t`` ``(N, ...)``, shape ``(N,)``."""
    return torch.linalg.vector_norm(t.flatten(1), ord=p, dim=1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class Step(ABC):
    """A step of size ``step_size`` in some norm, optionally inside a ball of radius ``eps``.

    Parameters
    ----------
    step_size : float in (0, 100], the length of one step in this norm.
    eps : float in (0, 1000] or None. None means unconstrained traversal: no projection.

    Raises
    ------
    ValueError : a step size or eps that is not a number (bools included), NaN, inf, not
        positive, or above its limit.
    """

    norm: str

    def __init__(self, step_size: float, eps: float | None = None) -> None:
        # Comparisons, not math.isfinite: they also work for ints too large for a float.
        if not _is_real(step_size) or not 0 < step_size < math.inf:
            raise ValueError(f"step size must be > 0 and finite, got {step_size!r}")
        if step_size > MAX_STEP_SIZE:
            raise ValueError(f"step size must be at most {MAX_STEP_SIZE:g} (a 28×28 grey image is 28 "
                             f"wide in L2), got {step_size!r}")
        if eps is not None and (not _is_real(eps) or not 0 < eps <= MAX_EPS):
            raise ValueError(f"eps must be > 0 and at most {MAX_EPS:g} (or None for no ball), "
                             f"got {eps!r}")
        self.step_size = float(step_size)
        self.eps = None if eps is None else float(eps)

    @abstractmethod
    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Unit ascent direction in this norm; zero where the gradient is zero."""

    @abstractmethod
    def _project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        """Project ``delta`` onto the ball of radius ``eps``."""

    @abstractmethod
    def _random_delta(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A random perturbation in the ball of radius ``eps``."""

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``x + step_size * direction(grad)``, not yet projected or clipped.

        A sample whose gradient is zero is left where it is (no division by zero); callers
        see that as a zero gradient norm.
        """
        return x + self.step_size * self.direction(grad)

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The closest point to ``x`` in the ``eps``-ball around ``x0`` (``x`` itself if no eps)."""
        if self.eps is None:
            return x
        return x0 + self._project_delta(x - x0)

    def random_start(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random point of the ``eps``-ball around ``x0``, clipped to [0, 1]."""
        if self.eps is None:
            raise ValueError("a random start needs a ball: set eps")
        return (x0 + self._random_delta(x0, generator)).clamp_(0.0, 1.0)

    def advance(self, x: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One full update: step along ``grad``, project around ``x0``, clip to [0, 1].

        Clipping after projection keeps the point inside the ball, because clipping to the
        box that contains ``x0`` only moves each pixel towards ``x0``.
        """
        return self.project(self.step(x, grad), x0).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(step_size={self.step_size}, eps={self.eps})"


class L2Step(Step):
    """Normalized-gradient step: moves exactly ``step_size`` in L2 before clipping."""

    norm = "l2"

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        n = per_sample_norm(grad, 2)
        scale = torch.where(n > 0, 1.0 / n.clamp_min(torch.finfo(n.dtype).tiny), 0.0)
        return grad * _per_sample(scale, grad)

    def _project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        n = per_sample_norm(delta, 2)
        factor = torch.where(n > self.eps, self.eps / n.clamp_min(1e-12), 1.0)
        return delta * _per_sample(factor, delta)

    def _random_delta(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # A Gaussian direction scaled to a uniformly drawn radius: a point of the ball.
        g = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
        n = per_sample_norm(g, 2).clamp_min(1e-12)
        r = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
        return g * _per_sample(self.eps * r / n, g)


class LinfStep(Step):
    """Signed-gradient step: moves each pixel by ``step_size`` (or 0 where the gradient is 0)."""

    norm = "linf"

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def _project_delta(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.clamp(-self.eps, self.eps)

    def _random_delta(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
        return (2 * u - 1) * self.eps


# The norms make_step takes, each with its step in words (the app's menu, the CLI's help).
NORMS: dict[str, str] = {
    L2Step.norm: "L2 (normalized gradient)",
    LinfStep.norm: "L∞ (sign of gradient)",
}


def make_step(norm: str, step_size: float, eps: float | None = None) -> Step:
    """``"l2"`` or ``"linf"`` → the matching :class:`Step`."""
    kinds = {"l2": L2Step, "linf": LinfStep}
    try:
        return kinds[norm.lower()](step_size, eps)
    except KeyError:
        raise ValueError(f"unknown norm {norm!r}; use one of {sorted(kinds)}") from None
