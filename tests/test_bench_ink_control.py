"""The ink control: frames scaled to a typical ink, and the success rule's leniency to faint frames."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_ink_control")


def test_frames_are_scaled_to_their_targets_typical_ink(bench):
    rng = np.random.default_rng(0)
    images = (rng.random((3, 28, 28)) < 0.1).astype(np.float32) * 0.5  # faint strokes
    ink = np.array([40.0, 80.0])
    out = bench.with_typical_ink(images, np.array([0, 1, 1]), ink)
    assert out.min() >= 0 and out.max() <= 1
    # scaled up to the typical ink where no pixel saturates; never past it
    sums = out.sum((1, 2))
    assert sums[0] == pytest.approx(40.0, rel=1e-4)
    assert sums[1] <= 80.0 + 1e-3 and sums[2] <= 80.0 + 1e-3
    assert np.array_equal(out > 0, images > 0)  # the same pixels lit: only the intensity changes
    typical = bench.typical_ink(np.stack([images[0], images[0] * 2, images[1]]), np.array([1, 1, 0]), 2)
    assert typical == pytest.approx([images[1].sum(), images[0].sum() * 1.5])


def test_the_success_rule_is_lenient_to_faint_real_digits(bench):
    """Why the control exists: real digits dimmed pass the nearest-real test more often."""
    from trav_gui.engine.data.datasets import test_set
    from trav_gui.engine.realism import RealismScorer

    scorer = RealismScorer(dataset="mnist", device="cpu")
    images, labels = test_set("mnist")
    x, y = images[2000:2300].astype(np.float32) / 255.0, np.asarray(labels[2000:2300])
    as_they_are = bench.successes(scorer, x, y).mean()
    dimmed = bench.successes(scorer, x * 0.74, y).mean()
    assert 0.75 <= as_they_are <= 0.95 and dimmed > as_they_are + 0.03
