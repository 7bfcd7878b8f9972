"""What gives the endpoints away: the views that take one kind of detail out, and the stroke-width estimate."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_tells")


def bar(width: int, length: int = 15, value: float = 1.0) -> np.ndarray:
    """A 28x28 image holding one upright bar."""
    x = np.zeros((28, 28), np.float32)
    x[6:6 + length, 10:10 + width] = value
    return x


def test_the_views_take_out_what_they_say(bench):
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 28, 28)).astype(np.float32)
    off = bench.without_faint(x)
    assert np.all(off[x < 0.3] == 0) and np.array_equal(off[x >= 0.3], x[x >= 0.3])
    assert set(np.unique(bench.binarized(x))) == {0.0, 1.0}
    assert np.array_equal(bench.binarized(x) == 1, x >= 0.5)
    q = bench.eight_bit(x)
    assert np.allclose(q * 255, np.round(q * 255)) and np.abs(q - x).max() <= 0.5 / 255 + 1e-7
    b = bench.blurred(x)
    assert b.shape == x.shape and b.std() < x.std()  # smoother
    assert np.allclose(b[0, 0], bench.blurred(x[:1])[0, 0])  # image by image: nothing leaks across the batch


def test_grey_levels_are_the_reals_rank_for_rank(bench):
    rng = np.random.default_rng(1)
    fake = rng.random((3, 28, 28)).astype(np.float32) * 0.5
    real = (rng.random((3, 28, 28)) < 0.2).astype(np.float32)
    out = bench.grey_levels_of(fake, real)
    assert np.array_equal(np.sort(out, axis=None), np.sort(real, axis=None))  # the reals' distribution
    # the brightest pixels of the fakes are the ones that became ink
    assert out.reshape(-1)[np.argmax(fake)] == 1.0 and out.reshape(-1)[np.argmin(fake)] == 0.0
    with pytest.raises(ValueError, match="pixels"):
        bench.grey_levels_of(fake, real[:2])


def test_stroke_width_follows_the_bars_width(bench):
    widths = [bench.stroke_width(np.stack([bar(w)] * 2)) for w in (2, 3, 5)]
    assert widths[0] < widths[1] < widths[2]
    assert widths[1] == pytest.approx(3, rel=0.3) and widths[2] == pytest.approx(5, rel=0.3)
    assert np.isnan(bench.stroke_width(np.stack([bar(3, value=0.4)])))  # faint: no ink, no width
