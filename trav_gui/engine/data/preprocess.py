"""Turn a canvas drawing into the input the models expect, the way MNIST digits were made.

MNIST's recipe (LeCun et al.): crop to the ink, scale into a 20×20 box keeping the aspect
ratio with anti-aliasing, then place it in a 28×28 field so that its centre of mass sits at
the centre of the field. Worlds of other sizes keep the proportions (a 32×32 field gets a 23×23
box). In colour worlds the ink is then painted with the brush colour (:func:`paint`), the way
Colored-MNIST's digits are coloured.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["EmptyDrawingError", "drawing_to_image", "drawing_to_mnist", "paint", "shift_images"]

BOX = 20
FIELD = 28
INK_THRESHOLD = 0.05


class EmptyDrawingError(ValueError):
    """The drawing has no ink to classify."""


def paint(grey: np.ndarray, colour: tuple[float, float, float]) -> np.ndarray:
    """Ink ``grey`` (H, W) in [0, 1] painted with ``colour`` (r, g, b in [0, 1]): (3, H, W) float32."""
    rgb = np.clip(np.asarray(colour, np.float32), 0.0, 1.0)
    if rgb.shape != (3,):
        raise ValueError(f"a brush colour is three values r, g, b in [0, 1], got {colour!r}")
    return (np.asarray(grey, np.float32)[None] * rgb[:, None, None]).astype(np.float32)


def drawing_to_mnist(drawing: np.ndarray, size: int = FIELD) -> np.ndarray:
    """Preprocess a drawing like MNIST, into a ``size``×``size`` field (28 by default).

    Parameters
    ----------
    drawing : (H, W) array of ink intensity, any size and stroke width; floats in [0, 1]
        or uint8 in [0, 255]; 0 is background. A colour drawing (3, H, W) is placed the same
        way, every channel moved and scaled together (see :func:`drawing_to_image`).

    Returns
    -------
    (size, size) float32 in [0, 1] ((3, size, size) for a colour drawing), the digit scaled into
    a box of 20/28 of the field (20×20 at 28) and centred by centre of mass.

    Raises
    ------
    EmptyDrawingError : nothing (or only faint specks below 5 % intensity) was drawn.
    ValueError : not a 2-D (or 3-channel) array, or non-finite values.
    """
    a = np.asarray(drawing)
    colour = a.ndim == 3 and a.shape[0] == 3
    if not (a.ndim == 2 or colour) or a.size == 0:
        raise ValueError(f"a drawing must be a 2-D array (or 3 colour channels), got shape {a.shape}")
    a = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
    if not np.isfinite(a).all():
        raise ValueError("the drawing contains NaN or inf")
    a = np.clip(a, 0.0, 1.0)
    channels = a if colour else a[None]
    ink = channels.max(axis=0)  # where anything was drawn, in any colour
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        raise EmptyDrawingError("the canvas is empty: draw a digit first")
    crop = channels[:, rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    h, w = crop.shape[1:]
    field = int(size)
    scale = (BOX if field == FIELD else max(1, round(field * BOX / FIELD))) / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    small = F.interpolate(torch.from_numpy(np.ascontiguousarray(crop))[None],
                          size=(new_h, new_w), mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1).numpy()
    mass = small.max(axis=0)
    if mass.sum() <= 0:
        raise EmptyDrawingError("the drawing is too faint to classify")
    ys, xs = np.indices(mass.shape)
    cy, cx = (ys * mass).sum() / mass.sum(), (xs * mass).sum() / mass.sum()
    centre = (field - 1) / 2
    top, left = int(round(centre - cy)), int(round(centre - cx))
    out = np.zeros((len(channels), field, field), np.float32)
    # Paste with clipping: a lopsided digit may be shifted partly past the edge.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, field), min(left + new_w, field)
    out[:, y0:y1, x0:x1] = small[:, y0 - top: y1 - top, x0 - left: x1 - left]
    return out if colour else out[0]


def drawing_to_image(drawing: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A drawing as an image of a data set of ``shape`` (C, H, W): grey (H, W) or colour (3, H, W)
    (a grey drawing in a colour world stays grey: its three channels equal)."""
    a = np.asarray(drawing)
    out = drawing_to_mnist(a, shape[1])
    if shape[0] == 3 and out.ndim == 2:
        out = np.repeat(out[None], 3, axis=0)
    return out


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (..., H, W) moved ``dy`` pixels down and ``dx`` right (negative: up, left); what
    leaves the field is cut off and the uncovered border is background (0). A copy, same dtype."""
    images = np.asarray(images)
    h, w = images.shape[-2:]
    out = np.zeros_like(images)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = images[..., src_y, src_x]
    return out
