"""The realism benchmark on a handful of traversals: its figures are the metrics' own."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark

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


def test_bench_measures_success_versus_shift_and_continues_a_cut_run(bench, tmp_path, capsys):
    args = ["--digits", "2", "--steps", "40", "--shifts", "0", "2", "--out", str(tmp_path), "--name", "s"]
    first = bench.main(["--levers", "robust", *args])
    assert set(first["by_shift"]) == {"0", "2"} and first["directions"] == ["dr", "ul", "dl", "ur"]
    real0, real2 = (first["by_shift"][k]["real_digits"] for k in ("0", "2"))
    # Real digits moved 2 px still succeed (compared at their own offset too) about as often as
    # in place, while the judge alone, shown them where they stand, agrees less often.
    assert abs(real2["judges"]["judge"]["success"] - real0["judges"]["judge"]["success"]) < 0.03
    assert real2["agree_in_place"]["judge"] < real2["judges"]["judge"]["agree"]
    moved = first["by_shift"]["2"]["levers"]["robust"]
    assert moved["success_in_place"]["judge"] <= moved["judges"]["judge"]["success"] <= moved["reach"]
    # A second run with another lever keeps what the file holds and adds the new lever.
    second = bench.main(["--levers", "robust", "standard", *args])
    assert second["by_shift"]["2"]["levers"]["robust"] == moved
    assert set(second["by_shift"]["2"]["levers"]) == {"robust", "standard"}
    assert "| 2 |" in capsys.readouterr().out
    assert (tmp_path / "s.png").is_file() == (bench.pyplot() is not None)  # matplotlib is optional


def test_shifted_starts_follow_the_directions_by_turns(bench):
    offsets = bench.start_offsets(5, 3, ("dr", "u"))
    assert offsets.tolist() == [[3, 3], [-3, 0], [3, 3], [-3, 0], [3, 3]]
    assert not bench.start_offsets(4, 0, ("dr",)).any()
    x = np.zeros((2, 28, 28), np.float32)
    x[:, 10, 10] = 1
    moved = bench.shifted_starts(x, np.array([[3, 3], [-3, 0]]))
    assert moved[0, 13, 13] == 1 and moved[1, 7, 10] == 1 and moved.sum() == 2


def test_the_two_sample_test_tells_noisy_digits_from_real_ones_but_not_real_from_real(bench):
    from trav_gui.engine.data import datasets as data

    images, labels = data.test_digits()
    a = images[:200].astype(np.float32) / 255.0
    b = images[200:400].astype(np.float32) / 255.0
    hazy = np.clip(a + 0.15 * np.random.default_rng(0).random(a.shape, dtype=np.float32), 0, 1)
    assert bench.two_sample_accuracy(hazy, b, splits=1, epochs=15) > 0.9
    assert bench.two_sample_accuracy(a, b, splits=1, epochs=15) < 0.7
    # by seed: seed 0 is the single figure, the others draw other splits and weights
    seeds = bench.two_sample_seeds(a[:60], b[:60], 3, splits=1, epochs=3)
    assert len(seeds) == 3 and seeds[0] == bench.two_sample_accuracy(a[:60], b[:60], splits=1, epochs=3)
    assert len(set(seeds)) > 1 and bench.two_sample_seeds(a[:60], b[:60], 0, splits=1, epochs=1)[0] >= 0
    pool = bench.real_pool(images, labels, np.array([3, 3, 5]))
    assert pool.shape == (3, 28, 28)
    # more 3s than test digits 1000-1999 hold: the first are as before, the rest new, none repeated
    held = images[1000:2000][labels[1000:2000] == 3].astype(np.float32) / 255.0
    big = bench.real_pool(images, labels, np.full(len(held) + 40, 3))
    assert np.array_equal(big[: len(held)], held)
    assert len(np.unique(big.reshape(len(big), -1), axis=0)) == len(big)


def test_the_pixel_profile_tells_haze_from_black(bench):
    from trav_gui.engine.data import datasets as data

    images, _ = data.test_digits()
    real = images[:100].astype(np.float32) / 255.0
    profile = bench.pixel_profile(real)
    assert set(profile) == {"black", "haze", "grey", "saturated", "ink"}
    assert abs(sum(profile[k] for k in bench.PIXEL_BANDS) - 1) < 1e-6  # the bands cover [0, 1]
    assert profile["black"] > 0.7 and profile["haze"] < 0.1  # MNIST: a black field, thin stroke edges
    hazy = bench.pixel_profile(np.clip(real + 0.05, 0, 1))
    assert hazy["black"] == 0 and hazy["haze"] > 0.7 and hazy["ink"] > profile["ink"]


def test_the_frames_figure_has_a_labelled_row_per_entry(bench, tmp_path):
    from PIL import Image

    x = np.zeros((5, 28, 28), np.float32)
    x[:, 10:18, 12:16] = 1.0
    path = bench.frames_figure({"start": x, "endpoint": 1 - x, "real": x[:4]}, tmp_path / "f.png", scale=2, gap=4)
    sheet = np.asarray(Image.open(path).convert("L"))
    assert sheet.shape == (3 * (56 + 4), 170 + 4 * (56 + 4))  # 3 rows; the shortest row (4) sets the columns
    assert sheet[60 + 2, 170 + 2] == 255 and sheet[2, 170 + 2] == 0  # "endpoint" is the inverse of "start"


def test_the_final_denoising_sees_each_image_centred_and_gives_it_back_in_place():
    """bench_final_denoising: the prior's estimate replaces the image, computed where the recipe's
    prior sees it (ink centred) and moved back to where the image stands."""
    import torch

    module = load_benchmark("bench_final_denoising")
    x = np.zeros((2, 28, 28), np.float32)
    x[:, 4:10, 4:10] = 1.0  # ink up-left of centre
    offsets = torch.tensor([[9, 9], [0, 0]])
    seen = []

    def prior(images, sigma):  # records what it sees; keeps only the central 14x14, halves it
        seen.append(images.clone())
        out = torch.zeros_like(images)
        out[..., 7:21, 7:21] = 0.5 * images[..., 7:21, 7:21]
        return out

    out = module.denoised(prior, x, offsets, [0.3, 0.1])
    assert len(seen) == 2 and seen[0][0, 0, 13:19, 13:19].min() == 1  # the first image seen centred
    assert np.allclose(out[0], 0.25 * x[0])  # moved back in place: halved twice
    # The other was not moved: only its ink inside the kept centre is left, halved twice.
    assert np.allclose(out[1][7:10, 7:10], 0.25) and out[1].sum() == pytest.approx(9 * 0.25)


def test_best_of_keeps_each_endpoints_draw_the_classifier_likes_best_seen_centred():
    """bench_final_denoising --best-of: per endpoint, the draw with the highest p(target), judged
    where the recipe sees it (ink centred), and given back as drawn."""
    import torch

    module = load_benchmark("bench_final_denoising")
    draws = np.zeros((3, 2, 28, 28), np.float32)
    draws[1, 0, 0:4, 0:4] = 1.0   # endpoint 0: only draw 1 has ink, up-left; centred it lands mid-frame
    draws[2, 0, 12:16, 12:16] = 0.5  # draw 2 has fainter ink already mid-frame, but is moved away
    draws[0, 1, 12:16, 12:16] = 1.0  # endpoint 1 is not moved: draw 0 has its ink mid-frame
    offsets = torch.tensor([[12, 12], [0, 0]])

    def classifier(images):  # class 3's logit: the ink in the frame's centre; class 0: nothing
        logits = torch.zeros(len(images), 10)
        logits[:, 3] = 10 * images[:, 0, 12:16, 12:16].sum((1, 2))
        return logits

    kept = module.best_of(classifier, draws, offsets, np.array([3, 3]))
    assert np.array_equal(kept[0], draws[1, 0]) and np.array_equal(kept[1], draws[0, 1])
    # against its target the emptiest draw wins
    kept = module.best_of(classifier, draws, offsets, np.array([0, 0]))
    assert kept[0].sum() == 0 and kept[1].sum() == 0


def test_first_accepted_keeps_the_first_draw_still_called_the_target_else_the_fallback():
    """bench_final_denoising --accept: rejection sampling, judged where the recipe sees the frame
    (ink centred); an endpoint with no accepted draw keeps its fallback frame."""
    import torch

    module = load_benchmark("bench_final_denoising")
    draws = np.zeros((3, 3, 28, 28), np.float32)
    draws[0, 0, 12:16, 12:16] = 1.0   # endpoint 0 is moved by (12, 12): its mid-frame ink goes off-centre
    draws[1, 0, 0:4, 0:4] = 0.1       # faint up-left ink lands mid-frame: p(3) = 0.62, accepted at 0.5
    draws[2, 0, 0:4, 0:4] = 1.0       # bolder, and later: best_of would keep it, rejection does not
    draws[0, 1, 12:16, 12:16] = 1.0   # endpoint 1, not moved: the first draw is accepted
    draws[2, 1, 12:16, 12:16] = 1.0
    fallback = np.full((3, 28, 28), 0.25, np.float32)  # endpoint 2 has no ink in any draw
    offsets = torch.tensor([[12, 12], [0, 0], [0, 0]])

    def classifier(images):  # class 3's logit: the ink in the frame's centre, against 9 empty classes
        logits = torch.zeros(len(images), 10)
        logits[:, 3] = 2 * images[:, 0, 12:16, 12:16].sum((1, 2))
        return logits

    targets = np.array([3, 3, 3])
    kept, has = module.first_accepted(classifier, draws, offsets, targets, 0.5, fallback)
    assert has.tolist() == [True, True, False]
    assert np.array_equal(kept[0], draws[1, 0]) and np.array_equal(kept[1], draws[0, 1])
    assert np.array_equal(kept[2], fallback[2])
    assert np.array_equal(module.best_of(classifier, draws, offsets, targets)[0], draws[2, 0])
    kept, has = module.first_accepted(classifier, draws, offsets, targets, 0.99, fallback)
    assert has.tolist() == [True, True, False] and np.array_equal(kept[0], draws[2, 0])
    assert module.draw_counts(8) == [2, 4, 8] and module.draw_counts(6) == [2, 4, 6] and module.draw_counts(2) == [2]


def test_most_typical_keeps_the_candidate_the_prior_denoises_least_seen_centred():
    """bench_final_denoising --typical: the prior's own choice, its denoising error measured where
    the recipe's prior sees the frame (ink centred)."""
    import torch

    module = load_benchmark("bench_final_denoising")
    template = torch.zeros(1, 1, 28, 28)
    template[..., 12:16, 12:16] = 1.0

    def prior(noisy, sigma):  # every noisy frame denoised to one typical digit: a centred square
        return template.expand_as(noisy)

    cands = np.zeros((3, 2, 28, 28), np.float32)
    cands[0, 0, 12:16, 12:16] = 1.0  # endpoint 0 is moved by (12, 12): its square mid-frame goes off-centre
    cands[1, 0, 0:4, 0:4] = 1.0      # ... while this one's up-left square lands on the template
    cands[2, 0, 0:4, 0:4] = 0.5
    cands[2, 1, 12:16, 12:16] = 1.0  # endpoint 1 is not moved: the exact template wins
    cands[0, 1, 12:16, 12:16] = 0.6
    offsets = torch.tensor([[12, 12], [0, 0]])
    errors = np.stack([module.denoising_error(prior, c, offsets) for c in cands])
    assert errors[1, 0] == 0 and errors[2, 1] == 0 and (errors > 0).sum() == 4
    kept = module.most_typical(prior, cands, offsets)
    assert np.array_equal(kept[0], cands[1, 0]) and np.array_equal(kept[1], cands[2, 1])
