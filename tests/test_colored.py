"""Colored-MNIST's recipe and its colour measures (the colour world of the image-worlds issue)."""

from __future__ import annotations

import numpy as np
import pytest

from trav_gui.engine.data import colored, datasets


@pytest.mark.parametrize("hue, rgb", [(0.0, (1, 0, 0)), (1 / 6, (1, 1, 0)), (1 / 3, (0, 1, 0)), (0.5, (0, 1, 1)),
                                      (2 / 3, (0, 0, 1)), (5 / 6, (1, 0, 1)), (1 / 12, (1, 0.5, 0))])
def test_hues_become_fully_saturated_colours(hue, rgb):
    np.testing.assert_allclose(colored.hsv_to_rgb(np.array([hue]))[0], rgb, atol=1e-6)


def test_the_recipe_is_deterministic_and_independent_of_the_label():
    assert np.array_equal(colored.hues(100, colored.TEST_SEED), colored.hues(100, colored.TEST_SEED))
    assert not np.array_equal(colored.hues(100, colored.TEST_SEED), colored.hues(100, colored.TRAIN_SEED))
    _, labels = datasets.test_set("mnist")
    h = colored.hues(len(labels), colored.TEST_SEED)
    assert h.min() >= 0 and h.max() < 1
    per_class = [h[labels == k].mean() for k in range(10)]
    assert max(abs(m - 0.5) for m in per_class) < 0.03  # no class has a colour of its own


def test_colorize_keeps_the_background_black_and_the_ink_at_its_grey_level_and_hue():
    grey, _ = datasets.test_set("mnist")
    grey = grey[:50]
    h = colored.hues(50, colored.TEST_SEED)
    rgb = colored.colorize(grey, h)
    assert rgb.shape == (50, 3, 28, 28) and rgb.dtype == np.uint8
    assert (rgb[np.broadcast_to((grey == 0)[:, None], rgb.shape)] == 0).all()
    assert np.abs(rgb.max(1).astype(int) - grey).max() <= 1  # the brightest channel is the ink
    found, grey_share = colored.ink_hue(rgb / 255.0)
    assert colored.hue_distance(found, h).max() < 2.0 and np.nanmax(grey_share) < 0.05
    with pytest.raises(ValueError, match="one hue per image"):
        colored.colorize(grey, h[:3])


def _stroke(hue: float | None, rows=slice(2, 6)) -> np.ndarray:
    """A (3, 28, 28) image with a horizontal bar of ink of ``hue`` (None: grey)."""
    img = np.zeros((3, 28, 28))
    colour = np.full(3, 0.8) if hue is None else colored.hsv_to_rgb(np.array([hue]))[0] * 0.8
    img[:, rows, 4:24] = colour[:, None, None]
    return img


def test_added_ink_of_the_start_hue_keeps_the_colour_and_other_ink_does_not():
    start = _stroke(0.60)
    same = start + _stroke(0.62, rows=slice(10, 14))
    other = start + _stroke(0.10, rows=slice(10, 14))
    grey = start + _stroke(None, rows=slice(10, 14))
    kept, grey_share = colored.colour_kept(np.stack([same, other, grey, start]), start)
    assert kept.tolist() == [True, False, False, False]
    assert grey_share[0] < 0.01 and grey_share[2] > 0.99 and np.isnan(grey_share[3])  # nothing added
    assert colored.hue_distance(np.array([0.95]), np.array([0.05]))[0] == pytest.approx(36.0)  # across red
