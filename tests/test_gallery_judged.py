"""Judged galleries: a verdict per cell, a one-row gallery from a given start, and finding the
cell under a click on the picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data import datasets as data
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.output import gallery as gal
from trav_gui.engine.realism import RealismScorer


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return [SmallCNN().eval().requires_grad_(False), SmallCNN().eval().requires_grad_(False)]


@pytest.fixture(scope="module")
def scorer():
    return RealismScorer(dataset="mnist")


def test_a_judged_gallery_holds_the_judges_verdict_of_every_shown_image(models, scorer):
    g = gal.run_gallery(models, ["a", "b"], TraversalConfig(steps=2), scorer=scorer)
    assert g.success.shape == g.judge_class.shape == g.nn_ratio.shape == (2, 10, 10)
    images, _ = data.test_digits()
    start = images[gal.gallery_start_indices()[3]] / 255.0
    assert g.judge_class[0, 3, 3] == 3 and g.nn_ratio[0, 3, 3] < 2  # the start itself: a real 3
    assert not g.success[:, np.arange(10), np.arange(10)].any()  # ...but not a traversal's success
    expected = scorer.success(scorer.judge_probs(g.images[1, 3, 7][None]),
                              scorer.reference.nearest(g.images[1, 3, 7][None], 7)[0], 7)[0]
    assert g.success[1, 3, 7] == expected
    assert gal.badge(g, 0, 3, 3) is None and np.allclose(g.images[0, 3, 3], start)
    verdicts = {gal.badge(g, m, r, c) for m in range(2) for r in range(10) for c in range(10) if r != c}
    assert verdicts <= set(gal.BADGE_COLOURS) and verdicts  # untrained models: mostly the judge disagrees
    for m, r, c in [(0, 1, 2), (1, 4, 0)]:
        want = ("success" if g.success[m, r, c] else
                "unreal" if g.judge_class[m, r, c] == c else "judge_disagrees")
        assert gal.badge(g, m, r, c) == want
    plain = gal.run_gallery(models, ["a", "b"], TraversalConfig(steps=2))
    assert plain.success is None and gal.badge(plain, 0, 1, 2) is None


def test_a_gallery_from_one_start_is_one_row_to_every_other_class(models, scorer):
    images, labels = data.test_digits()
    start = images[15] / 255.0
    g = gal.run_gallery(models, ["a", "b"], TraversalConfig(steps=3), scorer=scorer, start=start,
                        start_class=int(labels[15]), start_index=15)
    own = int(labels[15])
    assert g.images.shape == (2, 1, 10, 28, 28) and g.rows == (own,) and g.cell(0, 4) == (15, 4)
    assert np.allclose(g.images[:, 0, own], start)  # its own column shows the start
    others = [c for c in range(10) if c != own]
    assert (np.abs(g.images[:, 0, others] - start).reshape(2, 9, -1).max(-1) > 0).all()
    picture = gal.render_galleries_side_by_side(g)
    assert picture.height < 200  # one row
    drawn = gal.run_gallery(models, ["a", "b"], TraversalConfig(steps=1), start=start)
    predicted = int(models[0](torch.from_numpy(start[None, None].astype(np.float32))).argmax())
    assert drawn.start_indices == (-1,) and drawn.rows == (predicted,)  # no class given: the first model's


def test_cell_at_finds_the_cell_under_a_point_of_the_side_by_side_picture(models):
    g = gal.run_gallery(models, ["a", "b"], TraversalConfig(steps=1))
    picture = gal.render_galleries_side_by_side(g)
    one = gal.render_gallery(g, 0)
    lay = gal._layout(g, 3)
    for m, r, c in [(0, 0, 0), (0, 2, 7), (1, 9, 9), (1, 5, 1)]:
        x = m * (one.width + 20) + lay["margin"] + c * (lay["cell"] + 4) + lay["cell"] // 2
        y = lay["top"] + lay["margin"] + r * (lay["cell"] + lay["caption"] + 4) + lay["cell"] // 2
        assert gal.cell_at(g, x, y) == (m, r, c)
        # the pixel there is the cell's image, upscaled
        px = np.asarray(picture.convert("L"))[y, x] / 255.0
        assert px == pytest.approx(g.images[m, r, c][(y - lay["top"] - lay["margin"] - r * (lay["cell"] + lay["caption"] + 4)) // 3,
                                                     (x - m * (one.width + 20) - lay["margin"] - c * (lay["cell"] + 4)) // 3], abs=1 / 255)
    assert gal.cell_at(g, 2, 2) is None  # the title
    assert gal.cell_at(g, one.width + 5, 200) is None  # the gap between two grids
    assert gal.cell_at(g, picture.width + 50, 200) is None
