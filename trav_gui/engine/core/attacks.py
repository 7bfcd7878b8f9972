"""Untargeted PGD built on the engine's steps, shared by adversarial training and evaluation."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from trav_gui.engine.core.steps import Step

__all__ = ["pgd"]


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    step: Step,
    iterations: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy of the true label ``y`` (or on ``loss``).

    Parameters
    ----------
    model : classifier, (N, 1, 28, 28) in [0, 1] → logits (N, 10). Its train/eval mode is
        left as the caller set it (training attacks in train mode would be a choice; the
        trainer uses eval mode for the attack and restores train mode itself).
    x : (N, 1, 28, 28) float32 in [0, 1], clean inputs.
    y : (N,) int64 true labels.
    step : an ``L2Step``/``LinfStep`` with ``eps`` set: the threat model.
    iterations : number of gradient steps.
    random_start : start from a random point of the ball (Madry et al.).
    loss : what to ascend instead, a function of the logits to a scalar (summed over the batch,
        so that each example's gradient does not depend on the batch size), e.g. TRADES's
        KL divergence from the clean prediction; ``y`` is then unused.

    Returns
    -------
    (N, 1, 28, 28) adversarial inputs inside the eps-ball around ``x``, pixels in [0, 1],
    detached.
    """
    if step.eps is None:
        raise ValueError("PGD needs a ball: the step must have eps set")
    x0 = x.detach()
    adv = step.random_start(x0, generator) if random_start else x0.clone()
    for _ in range(iterations):
        adv.requires_grad_(True)
        with torch.enable_grad():
            logits = model(adv)
            value = F.cross_entropy(logits, y, reduction="sum") if loss is None else loss(logits)
            (grad,) = torch.autograd.grad(value, adv)
        adv = step.advance(adv.detach(), x0, grad)
    return adv.detach()
