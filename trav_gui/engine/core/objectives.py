"""What a traversal climbs: a per-sample score of the target class, from logits.

Each objective maps logits ``(N, 10)`` and targets ``(N,)`` (int64) to a score ``(N,)``
that grows as the classifier moves toward the target.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["OBJECTIVES", "OBJECTIVE_DESCRIPTIONS", "get_objective", "logit", "logprob", "margin"]


def logprob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-probability of the target class (the default)."""
    return torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)


def logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Raw logit of the target class."""
    return logits.gather(1, target[:, None]).squeeze(1)


def margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Target logit minus the largest other logit (> 0 exactly when the target wins)."""
    own = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    return own - others.amax(dim=1)


OBJECTIVES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "logprob": logprob,
    "logit": logit,
    "margin": margin,
}

# The objectives' names in words, in the order of OBJECTIVES (the app's menu, the CLI's help).
OBJECTIVE_DESCRIPTIONS: dict[str, str] = {
    "logprob": "log-probability of target",
    "logit": "logit of target",
    "margin": "margin (target − best other)",
}


def get_objective(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; use one of {sorted(OBJECTIVES)}") from None
