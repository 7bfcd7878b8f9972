"""The realism benchmark on a handful of traversals: its figures are the metrics' own."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_realism.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH.parent))  # as when run as a script: its folder first
    try:
        spec = importlib.util.spec_from_file_location("bench_realism", BENCH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH.parent))


def test_bench_measures_levers_and_real_digits_and_merges_parts(bench, tmp_path):
    a = bench.main(["--levers", "robust", "stop", "--digits", "2", "--steps", "60", "--out", str(tmp_path),
                    "--name", "a"])
    b = bench.main(["--levers", "standard", "no-such-model", "--digits", "2", "--steps", "60",
                    "--out", str(tmp_path), "--name", "b"])
    assert set(a["levers"]) == {"robust", "stop"} and set(b["levers"]) == {"standard"}  # unknown: skipped
    assert a["traversals"] == 18 and a["judges"] == ["judge", "judge-standard"]
    real = a["real_digits"]
    assert real["nn"] == pytest.approx(1.0, abs=0.05) and real["nn_test"] == pytest.approx(1.0, abs=0.05)
    assert 0.8 <= real["judges"]["judge"]["success"] <= 0.95  # about 90 % of real digits: the ceiling
    robust, stop = a["levers"]["robust"], a["levers"]["stop"]
    # Stopping at the confident point changes nothing before it, and holds the image there.
    assert stop["reach"] == robust["reach"] and stop["nn"] == pytest.approx(robust["nn"])
    assert stop["growth"] == pytest.approx(1.0) and stop["l2_last"] <= robust["l2_last"]
    for row in (robust, stop, b["levers"]["standard"]):
        for j in row["judges"].values():
            assert 0 <= j["success"] <= row["reach"] and 0 <= j["success_test"] <= 1
    merged = bench.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path)])
    assert set(merged["levers"]) == {"robust", "stop", "standard"}
    assert json.loads((tmp_path / "realism_levers.json").read_text())["levers"].keys() == merged["levers"].keys()
    assert np.isfinite(merged["levers"]["standard"]["l2_last"])
