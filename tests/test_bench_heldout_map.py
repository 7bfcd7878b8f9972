"""The held-out map benchmark: a recipe's success from the starts the success map left out."""

from __future__ import annotations

import json

from helpers import load_benchmark

from trav_gui.engine.output.successmap import successmap_starts


def test_the_held_out_rows_are_the_starts_after_the_map_s_and_each_verdict_is_kept(tmp_path):
    bench = load_benchmark("bench_heldout_map")
    out = tmp_path / "h.json"
    result = bench.main(["--without-retry", "--steps", "2", "--skip", "20", "--starts", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert "retry" not in result["recipe"] and result["config"]["steps"] == 2 and result["starts"] == "20-20"
    assert [len(v) for v in result["success_last"].values()] == [9] * 10  # one start of each class, 9 targets
    for c, verdicts in result["success_last"].items():
        assert result["by_start_class_last"][c] == sum(verdicts) / 9
    assert successmap_starts("mnist", 21)[0][:20] == successmap_starts("mnist", 20)[0]  # the map's come first


def test_a_rerun_continues_from_the_classes_already_written_and_only_with_the_same_settings(tmp_path, monkeypatch):
    bench = load_benchmark("bench_heldout_map")
    out = tmp_path / "h.json"
    args = ["--without-retry", "--steps", "2", "--skip", "20", "--starts", "1", "--out", str(out)]
    full = bench.main(args)
    partial = {**full, "success_last": {c: full["success_last"][c] for c in "012"},
               "by_start_class_last": {c: full["by_start_class_last"][c] for c in "012"}}
    partial["success_last"]["0"] = [1] * 9  # a mark: a continued run keeps what the file holds
    del partial["overall_last"]
    out.write_text(json.dumps(partial))
    measured = []
    real = bench._measure
    monkeypatch.setattr(bench, "_measure", lambda *a, **k: measured.append(len(a[1])) or real(*a, **k))
    again = bench.main(args)
    assert len(measured) == 7 and again["success_last"]["0"] == [1] * 9  # classes 3-9 only
    assert again["success_last"]["5"] == full["success_last"]["5"]
    measured.clear()
    bench.main([*args[:2], "3", *args[3:]])  # other steps: measured again from the start, not mixed
    assert len(measured) == 10
    measured.clear()
    bench.main([*args, "--fresh"])
    assert len(measured) == 10
