"""Property-based tests (hypothesis): arbitrary drawings, steps and run records.

Each property holds for every input hypothesis can think of, not only for the cases the
other tests pick. Example counts are kept small so the file runs in seconds.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trav_gui.engine.core.steps import make_step, per_sample_norm
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data.preprocess import EmptyDrawingError, drawing_to_mnist
from trav_gui.engine.runs import record as rec

# TRAV_GUI_EXAMPLES=1000 for a deeper search than the fast suite's.
FAST = settings(max_examples=int(os.environ.get("TRAV_GUI_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- preprocessing

shapes = st.tuples(st.integers(1, 80), st.integers(1, 80))
float_drawings = hnp.arrays(np.float32, shapes,
                            elements=st.floats(-2, 3, width=32, allow_nan=False, allow_infinity=False))
uint8_drawings = hnp.arrays(np.uint8, shapes)


@FAST
@given(st.one_of(float_drawings, uint8_drawings))
def test_any_drawing_becomes_a_28x28_image_in_0_1_or_a_clear_empty_error(drawing):
    try:
        out = drawing_to_mnist(drawing)
    except EmptyDrawingError as exc:
        assert "empty" in str(exc) or "faint" in str(exc)
        scale = 255.0 if drawing.dtype == np.uint8 else 1.0
        assert (drawing.astype(np.float32) / scale).max() <= 0.05 + 1e-6 or "faint" in str(exc)
        return
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out.max() > 0  # ink in, ink out
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert rows[-1] - rows[0] < 24 and cols[-1] - cols[0] < 24  # a 20x20 box, antialiased


@FAST
@given(float_drawings, st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_blank_margins_do_not_change_the_result(drawing, top, bottom, left, right):
    try:
        expected = drawing_to_mnist(drawing)
    except EmptyDrawingError:
        return
    padded = np.pad(drawing, ((top, bottom), (left, right)))
    assert np.array_equal(drawing_to_mnist(padded), expected)


@FAST
@given(hnp.arrays(np.float32, shapes, elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.5])))
def test_non_finite_drawings_are_refused(drawing):
    assume(not np.isfinite(drawing).all())
    with pytest.raises(ValueError, match="NaN or inf"):
        drawing_to_mnist(drawing)


# ----------------------------------------------------------------------------- steps

pixels = hnp.arrays(np.float32, (2, 1, 6, 6), elements=st.floats(0, 1, width=32))
gradients = hnp.arrays(np.float32, (2, 1, 6, 6), elements=st.one_of(
    st.just(0.0), st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)))


@FAST
@given(x0=pixels, grads=st.lists(gradients, min_size=1, max_size=4), norm=st.sampled_from(["l2", "linf"]),
       step_size=st.floats(1e-4, 10), eps=st.one_of(st.none(), st.floats(1e-3, 10)))
def test_steps_stay_finite_in_the_box_and_inside_the_ball(x0, grads, norm, step_size, eps):
    step = make_step(norm, step_size, eps)
    x0 = torch.from_numpy(x0)
    x = x0.clone()
    for g in grads:
        x = step.advance(x, x0, torch.from_numpy(g))
        assert torch.isfinite(x).all()
        assert x.min() >= 0 and x.max() <= 1
        if eps is not None:
            p = 2 if norm == "l2" else float("inf")
            assert (per_sample_norm(x - x0, p) <= eps * (1 + 1e-5) + 1e-6).all()


@FAST
@given(x0=pixels, norm=st.sampled_from(["l2", "linf"]), eps=st.floats(1e-3, 10), seed=st.integers(0, 2**31))
def test_random_start_lies_in_the_ball_and_the_box(x0, norm, eps, seed):
    step = make_step(norm, 0.1, eps)
    x0 = torch.from_numpy(x0)
    x = step.random_start(x0, torch.Generator().manual_seed(seed))
    p = 2 if norm == "l2" else float("inf")
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert (per_sample_norm(x - x0, p) <= eps * (1 + 1e-5) + 1e-6).all()


@FAST
@given(x0=pixels, grad=gradients, step_size=st.floats(1e-3, 1.0))
def test_an_unclipped_l2_step_moves_exactly_step_size(x0, grad, step_size):
    step = make_step("l2", step_size)
    g = torch.from_numpy(grad)
    moved = per_sample_norm(step.step(torch.from_numpy(x0), g) - torch.from_numpy(x0), 2)
    nonzero = per_sample_norm(g, 2) > 0
    torch.testing.assert_close(moved[nonzero], torch.full_like(moved[nonzero], step_size), rtol=1e-4, atol=1e-6)
    assert (moved[~nonzero] == 0).all()


@FAST
@given(st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=3), st.none()))
def test_a_step_size_is_accepted_only_when_positive_finite_and_at_most_100(value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100
    if ok:
        assert make_step("l2", value).step_size == pytest.approx(float(value))
    else:
        with pytest.raises(ValueError, match="step size"):
            make_step("l2", value)


# ----------------------------------------------------------------------------- run records

configs = st.builds(
    lambda steps, step_size, norm, eps, objective, random_start, stop, seed: TraversalConfig(
        steps=steps, step_size=step_size, norm=norm, eps=eps, objective=objective,
        random_start=random_start and eps is not None, stop_at_prob=stop, seed=seed),
    st.integers(1, 100_000), st.floats(1e-4, 100), st.sampled_from(["l2", "linf"]),
    st.one_of(st.none(), st.floats(1e-3, 1e3)), st.sampled_from(["logprob", "logit", "margin"]),
    st.booleans(), st.one_of(st.none(), st.floats(0.01, 1.0)), st.integers(0, 2**63 - 1))
images = hnp.arrays(np.float32, (28, 28), elements=st.floats(0, 1, width=32))
model_refs = st.lists(st.builds(rec.ModelRef, st.text(min_size=1, max_size=30),
                                st.text("0123456789abcdef", min_size=64, max_size=64),
                                st.one_of(st.none(), st.text(max_size=50))), min_size=1, max_size=4)


@FAST
@given(refs=model_refs, image=images, target=st.integers(0, 9), config=configs,
       index=st.one_of(st.none(), st.integers(0, 9999)))
def test_run_records_round_trip_exactly(tmp_path_factory, refs, image, target, config, index):
    path = tmp_path_factory.mktemp("rec") / "run.json"
    record = rec.build_run_record(refs, image, target, config, test_index=index)
    rec.write_run_record(path, record)
    back = rec.read_run_record(path)
    assert np.array_equal(back.start_image, image)  # bit-exact through JSON
    assert back.config == config and back.target == target and back.test_index == index
    assert back.models == tuple(refs)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30)


@FAST
@given(json_values)
def test_arbitrary_json_is_refused_with_a_run_record_error_only(value):
    with pytest.raises(rec.RunRecordError):
        rec.validate_run_record(value)


def _leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(node, list) and node:
        # Images are 28 rows of 28: sample a few leaves, not all 784.
        for i in sorted({0, len(node) // 2, len(node) - 1}):
            yield from _leaf_paths(node[i], prefix + (i,))
    yield prefix


BASE = rec.build_run_record([rec.ModelRef("robust", "a" * 64)], np.full((28, 28), 0.25, np.float32), 3,
                           TraversalConfig(steps=10, eps=2.0))
PATHS = [p for p in _leaf_paths(BASE) if p]


@FAST
@given(st.sampled_from(PATHS), json_values)
def test_a_record_with_any_field_replaced_is_valid_or_refused_cleanly(path, value):
    record = json.loads(json.dumps(BASE))
    node = record
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        parsed = rec.validate_run_record(record)
    except rec.RunRecordError:
        return
    # Accepted: then it must be as usable as any good record.
    assert parsed.start_image.shape == (28, 28) and 0 <= parsed.target <= 9
    assert np.isfinite(parsed.start_image).all()
    assert parsed.config.make_step() is not None
