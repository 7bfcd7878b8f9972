"""Moving images by whole pixels, and the move that centres an image's ink.

MNIST's digits sit with their centre of mass at the centre of the field (its test digits: at
14.0 ± 0.3 px on a 28-pixel field), and networks trained on them expect them there. A
translation-aware recipe (``Recipe.centre``) shows its classifiers and prior each image moved
so that its ink is centred, with gradients flowing back through the move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["centring_offsets", "shift_batch"]


def centring_offsets(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """(N, 2) int64 (dy, dx): the whole-pixel move that brings the centre of mass of each
    image's ink (all channels summed) of ``x`` (N, C, H, W) to the field's centre (H/2, W/2),
    at most ``max_shift`` px each way; (0, 0) for an image without ink."""
    _, _, h, w = x.shape
    with torch.no_grad():
        ink = x.detach().sum(1)  # (N, H, W)
        mass = ink.sum((1, 2))
        ys = torch.arange(h, dtype=ink.dtype, device=x.device)
        xs = torch.arange(w, dtype=ink.dtype, device=x.device)
        safe = mass.clamp_min(1e-6)
        cy = (ink.sum(2) * ys).sum(1) / safe
        cx = (ink.sum(1) * xs).sum(1) / safe
        off = torch.stack([torch.round(h / 2 - cy), torch.round(w / 2 - cx)], 1).clamp(-max_shift, max_shift)
        return torch.where((mass > 1e-6)[:, None], off, torch.zeros_like(off)).to(torch.int64)


def shift_batch(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) moved by its own (dy, dx) of ``offsets`` (N, 2) (down and
    right for positive values), what leaves the field cut off and the uncovered border 0.
    Differentiable in ``x``: the gradient moves back the other way."""
    if not bool(offsets.any()):
        return x
    n, c, h, w = x.shape
    pad = int(offsets.abs().max())
    padded = F.pad(x, (pad,) * 4)
    rows = pad - offsets[:, 0, None] + torch.arange(h, device=x.device)[None]  # (N, H)
    cols = pad - offsets[:, 1, None] + torch.arange(w, device=x.device)[None]  # (N, W)
    return padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
