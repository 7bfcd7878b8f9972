"""Colored-MNIST: MNIST digits whose ink has a random, fully saturated hue, on black.

The recipe (deterministic): image ``i`` of a split gets the hue ``h_i``, the ``i``-th draw of
``numpy.random.default_rng(seed)`` uniform on [0, 1) (seed :data:`TRAIN_SEED` for the training
split, :data:`TEST_SEED` for the test split), independent of its label. Its pixels are the grey
digit's ink ``g`` (0 background, 1 ink) times the fully saturated colour of that hue:
``rgb = g · hsv_to_rgb(h, 1, 1)``. The background stays black, and the colour carries no class
information: a model that changes the class has no reason to change the colour.

This module holds the recipe and the hue measures it needs (the hue of a frame's ink, whether the
ink a traversal added kept the start's hue). Registering the data set (its shipped test set, its
models) builds on it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GREY_SATURATION", "HUE_TOLERANCE_DEGREES", "TEST_SEED", "TRAIN_SEED", "colorize", "colour_kept",
           "hue_distance", "hues", "hsv_to_rgb", "ink_hue"]

TRAIN_SEED = 0
TEST_SEED = 1
# Ink whose saturation is below this is grey: it has no hue to keep.
GREY_SATURATION = 0.25
# The added ink keeps the start's colour when its mean hue is within this of the start's.
HUE_TOLERANCE_DEGREES = 30.0


def hues(n: int, seed: int) -> np.ndarray:
    """The hues (n,) float64 in [0, 1) of the first ``n`` images of a split (see the module)."""
    return np.random.default_rng(seed).random(n)


def hsv_to_rgb(hue: np.ndarray) -> np.ndarray:
    """The fully saturated, full-value colours (..., 3) float32 in [0, 1] of hues (...) in [0, 1)."""
    h6 = (np.asarray(hue, np.float64) % 1.0) * 6.0
    # Each channel's distance around the hue circle from its own peak (R at 0, G at 2, B at 4).
    k = (np.array([5.0, 3.0, 1.0]) + h6[..., None]) % 6.0
    return (1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def colorize(grey: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """Grey digits (N, H, W) uint8 with ink hues (N,) as colour digits (N, 3, H, W) uint8."""
    grey = np.asarray(grey)
    if grey.ndim != 3 or grey.dtype != np.uint8:
        raise ValueError(f"grey digits must be (N, H, W) uint8, got {grey.shape} {grey.dtype}")
    colour = hsv_to_rgb(np.asarray(hue))
    if colour.shape != (len(grey), 3):
        raise ValueError(f"one hue per image: {len(grey)} images, hues of shape {np.shape(hue)}")
    rgb = grey[:, None].astype(np.float32) * colour[:, :, None, None]
    return np.rint(rgb).astype(np.uint8)


def _hue_and_saturation(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel of (..., 3, H, W) in [0, 1]: hue in [0, 1), saturation, and value (the max channel)."""
    rgb = np.asarray(rgb, np.float64)
    r, g, b = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    value = np.maximum(np.maximum(r, g), b)
    chroma = value - np.minimum(np.minimum(r, g), b)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(value == r, ((g - b) / safe) % 6.0, np.where(value == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue = np.where(chroma > 0, hue / 6.0, 0.0)
    saturation = np.where(value > 0, chroma / np.where(value > 0, value, 1.0), 0.0)
    return hue, saturation, value


def ink_hue(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean hue of each image's ink, and the share of its ink that is grey.

    Parameters
    ----------
    rgb : (..., 3, H, W) float in [0, 1].

    Returns
    -------
    hue : (...) in [0, 1), the circular mean of the coloured pixels' hues weighted by how much
        coloured ink each holds (value × saturation); NaN where there is no coloured ink.
    grey : (...) in [0, 1], the share of the ink (value) in pixels of saturation below
        :data:`GREY_SATURATION`; NaN where there is no ink.
    """
    hue, saturation, value = _hue_and_saturation(rgb)
    coloured = saturation >= GREY_SATURATION
    weight = np.where(coloured, value * saturation, 0.0)
    angle = 2 * np.pi * hue
    x, y = (weight * np.cos(angle)).sum((-2, -1)), (weight * np.sin(angle)).sum((-2, -1))
    total = weight.sum((-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(total > 1e-6, (np.arctan2(y, x) / (2 * np.pi)) % 1.0, np.nan)
        ink = value.sum((-2, -1))
        grey = np.where(ink > 1e-6, np.where(coloured, 0.0, value).sum((-2, -1)) / ink, np.nan)
    return mean, grey


def hue_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The angle between hues ``a`` and ``b`` (in [0, 1) each) in degrees, in [0, 180]."""
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) % 1.0
    return 360.0 * np.minimum(d, 1.0 - d)


def colour_kept(frames: np.ndarray, start: np.ndarray, tolerance: float = HUE_TOLERANCE_DEGREES
                ) -> tuple[np.ndarray, np.ndarray]:
    """Whether the ink a traversal added keeps the start's colour.

    Parameters
    ----------
    frames : (..., 3, H, W) in [0, 1], the traversed images.
    start : (3, H, W) in [0, 1], the start image they came from.
    tolerance : degrees of hue within which the colour counts as kept.

    Returns
    -------
    kept : (...) bool, the added ink (``max(frame − start, 0)``) has a mean hue within
        ``tolerance`` of the start's ink; False where the added ink has no colour at all.
    grey : (...) the share of the added ink that is grey (NaN where nothing was added).
    """
    start_hue, _ = ink_hue(np.asarray(start)[None])
    added = np.clip(np.asarray(frames, np.float64) - np.asarray(start, np.float64), 0.0, 1.0)
    added_hue, grey = ink_hue(added)
    with np.errstate(invalid="ignore"):
        kept = hue_distance(added_hue, start_hue[0]) <= tolerance
    return kept & np.isfinite(added_hue), grey
