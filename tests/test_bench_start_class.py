"""The start-class benchmark: recipe variants measured as the success map measures them."""

from __future__ import annotations

import json

import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_start_class")


def test_a_variant_changes_the_named_settings_only(bench):
    assert bench.parse_variant("shipped") == {}
    assert bench.parse_variant("sigma_max=0.7,prior_weight=0.2") == {"sigma_max": 0.7, "prior_weight": 0.2}
    assert bench.parse_variant("models=robust+robust-eps3,renoise=true") == {
        "models": ["robust", "robust-eps3"], "renoise": True}
    assert bench.parse_variant("prior=runs/score-w64.safetensors,prior_weight=0.2") == {
        "prior": "runs/score-w64.safetensors", "prior_weight": 0.2}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_variant("sigma_max")


def test_the_bench_measures_each_variant_by_start_class_and_skips_what_it_holds(bench, tmp_path, capsys):
    args = ["--variants", "shipped", "step_scale=0.2", "--sources", "1", "--from", "0", "--to", "1",
            "--out", str(tmp_path), "--name", "s"]
    result = bench.main(args)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved == json.loads(json.dumps(result))
    shipped, slow = result["variants"]["shipped"], result["variants"]["step_scale=0.2"]
    assert slow["settings"]["step_scale"] == 0.2 and shipped["settings"]["step_scale"] == 3.0
    row = shipped["by_source"]["1"]
    assert row["traversals"] == 9 and set(row["by_target"]) == {str(t) for t in range(10) if t != 1}
    for v in (shipped, slow):
        assert 0 <= v["success"] <= 1 and 0 <= v["success_last"] <= 1
        assert v["success"] == pytest.approx(sum(v["by_source"]["1"]["by_target"].values()) / 9)
    # steps a fifteenth as long do not get a 1 to the targets in 200 steps as often
    assert slow["success"] < shipped["success"]
    capsys.readouterr()
    again = bench.main(args)
    assert again["variants"] == result["variants"] and "in " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--variants", "no_such_setting=1", "--out", str(tmp_path)])


def test_another_objective_is_measured_afresh_and_recorded(bench, tmp_path, capsys):
    args = ["--variants", "shipped", "--sources", "1", "--from", "0", "--to", "1", "--out", str(tmp_path), "--name", "o"]
    plain = bench.main(args)
    assert "objective" not in plain  # files written before the option still match
    capsys.readouterr()
    margin = bench.main(args + ["--objective", "margin"])
    assert margin["objective"] == "margin" and "already" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o.json").read_text())["objective"] == "margin"
    with pytest.raises(SystemExit):
        bench.main(args + ["--objective", "no_such_objective"])



def test_steps_are_recorded_and_a_map_of_other_steps_is_measured_afresh(bench, tmp_path, capsys):
    """A recipe with a retry is measured at 300 steps: the file says so, and 200 steps are not reused."""
    args = ["--variants", "shipped", "--sources", "1", "--from", "0", "--to", "1", "--out", str(tmp_path), "--name", "n"]
    short = bench.main(args + ["--steps", "5"])
    assert short["steps"] == 5
    capsys.readouterr()
    longer = bench.main(args + ["--steps", "6"])
    assert longer["steps"] == 6 and "already" not in capsys.readouterr().err
    assert json.loads((tmp_path / "n.json").read_text())["steps"] == 6
    with pytest.raises(SystemExit):
        bench.main(args + ["--steps", "0"])

def test_look_picks_the_frames_the_nearest_real_test_failed_and_shows_what_it_compared(bench):
    import numpy as np

    got = {"success_last": np.array([False, True, False, False, False]),
           "judge_class_last": np.array([3, 3, 4, 3, 3])}
    targets = np.array([3, 3, 3, 3, 3])
    # not 1 (a success), not 2 (the judge says another class)
    assert bench.too_far(got, targets, 5).tolist() == [0, 3, 4]
    assert bench.too_far(got, targets, 2).tolist() == [0, 3]

    from trav_gui.engine.realism import RealismScorer

    scorer = RealismScorer(dataset="mnist", device="cpu")
    ref = scorer.reference
    one = int(np.flatnonzero(ref.labels == 7)[0])
    real = ref.image(one)
    moved = np.roll(real, 2, axis=1)  # not a reference image: its nearest is another 7
    rows = bench.nearest_rows(scorer, np.stack([real, moved]), np.array([7, 7]))
    assert list(rows) == ["last frame (the judge agrees)", "nearest real digit, same class", "|difference|"]
    near, diff = rows["nearest real digit, same class"], rows["|difference|"]
    assert np.array_equal(near[0], real) and diff[0].max() == 0  # a reference image is its own nearest
    index = int(ref.nearest(moved[None], 7)[1][0])
    assert np.array_equal(near[1], ref.image(index)) and np.allclose(diff[1], np.abs(moved - ref.image(index)))
    assert ref.labels[index] == 7 and diff[1].sum() > 0
