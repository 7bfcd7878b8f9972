"""Realism measures with known answers, the judge's role, realism in exports, and in the app's worker."""

from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest
import torch
from helpers import make_window
from PySide6.QtCore import Qt

from trav_gui.cli import main
from trav_gui.engine import realism
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data import datasets as data
from trav_gui.engine.data.preprocess import shift_images
from trav_gui.engine.models.loading import list_models, load_model
from trav_gui.engine.output.export import read_steps_csv


def play_to_end(qtbot, window, example, steps, target=None):
    """Pick test digit ``example`` (and ``target``), play ``steps`` steps and wait for the end."""
    window.input_panel.pick_example(example)
    if target is not None:
        window.set_target(target)
    window.settings.max_steps.setValue(steps)
    with qtbot.waitSignal(window.run_finished, timeout=60_000):
        window.play()


def test_real_test_digits_score_about_one_and_a_blank_image_fails():
    scorer = realism.RealismScorer(dataset="mnist")
    images, labels = data.test_set("mnist")
    sevens = images[labels == 7][:200].astype(np.float32) / 255.0
    got = scorer.score(sevens, 7)
    # By construction the median real test digit is at 1x typical; most are within the 90th percentile.
    assert 0.9 <= float(np.median(got.nn_ratio)) <= 1.1
    ok = scorer.success(got.judge_probs, got.nn_ratio, 7)
    assert 0.8 <= ok.mean() <= 0.97
    assert got.judge_probs.shape == (200, 10) and np.allclose(got.judge_probs.sum(-1), 1, atol=1e-5)
    # A blank image is farther from real 7s than a typical 7 is, and the judge does not call it
    # a 7: it fails. (Thin strokes make a blank image fairly near to real 7s in L2: the ratio
    # alone would not reject it, which is why success needs the judge too.)
    blank = scorer.score(np.zeros((1, 28, 28), np.float32), 7)
    assert blank.nn_ratio[0] > 1.1 and blank.judge_probs[0].argmax() != 7
    assert not scorer.success(blank.judge_probs, blank.nn_ratio, 7)[0]
    # The nearest reference of a reference image is itself, at distance 0.
    ref = scorer.reference
    i = int(np.flatnonzero(ref.labels == 3)[5])
    ratio, nearest = ref.nearest(ref.image(i)[None], 3)
    assert nearest[0] == i and ratio[0] == pytest.approx(0, abs=1e-3)



def test_verdicts_judge_each_frame_against_its_own_target_as_the_one_target_rule_does():
    """The many-target rule (success map, gallery, benchmarks) agrees with the one-target rule
    frame by frame, in any layout of frames and targets."""
    scorer = realism.RealismScorer(dataset="mnist")
    images, labels = data.test_set("mnist")
    x = images[:40].astype(np.float32) / 255.0
    targets = np.where(np.arange(40) % 2 == 0, labels[:40], (labels[:40] + 3) % 10)  # half true, half wrong
    judge_class, nn, ok = scorer.verdicts(x, targets)
    for i in range(40):
        one = scorer.score(x[i][None], int(targets[i]))
        assert judge_class[i] == one.judge_probs[0].argmax()
        assert nn[i] == pytest.approx(one.nn_ratio[0], rel=1e-5)
        assert ok[i] == scorer.success(one.judge_probs, one.nn_ratio, int(targets[i]))[0]
    assert ok[1::2].sum() == 0 and ok[0::2].mean() >= 0.7  # a real 4 is not a 7; most real digits pass
    # A grid (rows, columns) with one target per column, as the gallery asks.
    grid = np.stack([x[:10], x[10:20]])[:, :, None].repeat(2, 2)  # (2, 10, 2, 28, 28)
    columns = np.array([3, 5])[None, None, :]
    g_ok = scorer.verdicts(grid, columns)[2]
    assert g_ok.shape == (2, 10, 2)
    assert g_ok[1, 3, 1] == scorer.verdicts(x[13][None], 5)[2][0]


@pytest.mark.parametrize("dataset", ["mnist", "colored-mnist"])
def test_the_reference_tolerates_a_known_shift_and_only_that_one(dataset):
    """A real image moved 3 px is far from real images at its new place, and at distance 0
    from itself when compared at its own offset; the wrong offset does not help."""
    ref = realism.reference_set(dataset)
    i = int(np.flatnonzero(ref.labels == 3)[5])
    image = ref.image(i)
    assert np.abs(shift_images(shift_images(image, 3, 3), -3, -3) - image).max() == 0  # nothing cut off
    moved = shift_images(image, 3, 3)
    plain, _ = ref.nearest(moved[None], 3)
    tolerant, nearest = ref.nearest(moved[None], 3, offset=(3, 3))
    wrong, _ = ref.nearest(moved[None], 3, offset=(-3, -3))
    assert plain[0] > 1.2 and nearest[0] == i and tolerant[0] == pytest.approx(0, abs=1e-3)
    assert 1.2 < wrong[0] <= plain[0]  # the nearer of two far places: still far
    centred, _ = ref.nearest(image[None], 3, offset=(3, 3))  # moving a centred image away never wins
    assert centred[0] == pytest.approx(0, abs=1e-3)


def test_shift_images_moves_the_last_two_axes_with_zero_fill():
    x = np.arange(1, 26, dtype=np.float32).reshape(5, 5)
    down_right = shift_images(x, 1, 2)
    assert down_right[1, 2] == x[0, 0] and down_right[4, 4] == x[3, 2]
    assert not down_right[0].any() and not down_right[:, :2].any()
    up_left = shift_images(x, -2, -1)
    assert up_left[0, 0] == x[2, 1] and not up_left[3:].any() and not up_left[:, 4].any()
    rgb = np.stack([x, 2 * x, 3 * x])
    assert np.array_equal(shift_images(rgb, 1, 2)[2], 3 * down_right)
    assert not shift_images(x, 5, 0).any() and np.array_equal(shift_images(x, 0, 0), x)


def test_confident_point_flip_and_most_realistic_on_a_synthetic_trajectory():
    p_target = np.array([0.05, 0.3, 0.55, 0.85, 0.92, 0.97, 0.99])
    probs = np.zeros((7, 10))
    probs[:, 4] = p_target
    probs[:, 1] = 1 - p_target
    assert realism.flip_step(probs, 4) == 2
    assert realism.confident_point(probs, 4) == 4
    assert realism.confident_point(probs, 4, threshold=0.99) == 6
    assert realism.confident_point(probs, 1) == 0 and realism.confident_point(probs, 7) is None
    ratio = np.array([3.0, 2.5, 2.0, 1.2, 1.4, 1.3, 1.6])
    # From the confident point (4) on; the lower ratio at step 3 comes before it and does not count.
    assert realism.most_realistic(ratio, 4) == 5
    assert realism.most_realistic(ratio, None) is None
    assert realism.most_realistic(np.full(7, np.nan), 2) is None
    steps = np.arange(0, 70, 10)
    assert realism.summary(probs, ratio, steps, 4) == {
        "flip_step": 20, "confident_step": 40, "confident_prob": 0.9, "most_realistic_step": 50}


def test_after_a_retry_the_most_realistic_frame_is_the_retry_s_own_never_its_fog():
    """A recipe's retry goes back to the start (L2 0) and passes through a fog whose blurry frames can sit
    close to real digits; the most realistic frame is searched from the retry's own confident point."""
    p_target = np.array([0.1, 0.5, 0.8, 0.92, 0.95, 0.96, 0.1, 0.2, 0.4, 0.91, 0.97, 0.98])
    probs = np.stack([1 - p_target, p_target], 1)
    ratio = np.array([3.0, 2.0, 1.8, 1.7, 1.6, 1.9, 3.0, 0.8, 0.9, 1.5, 1.1, 1.3])  # the fog: 0.8 at 7
    l2 = np.array([0.0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    assert realism.kept_pull(l2) == 6
    assert realism.kept_pull(None) == 0 and realism.kept_pull(np.zeros(5)) == 0 and realism.kept_pull(l2[:6]) == 0
    assert realism.most_realistic(ratio, realism.confident_point(probs, 1)) == 7  # without the restart: the fog
    assert realism.most_realistic_of(probs, ratio, 1, l2) == 10
    assert realism.most_realistic_of(probs, ratio, 1) == 7 and realism.most_realistic_of(probs[:6], ratio[:6], 1, l2[:6]) == 4
    assert realism.most_realistic_of(probs[:9], ratio[:9], 1, l2[:9]) is None  # the retry is not sure yet
    steps = np.arange(12) * 10
    assert realism.summary(probs, ratio, steps, 1, l2)["most_realistic_step"] == 100
    assert realism.summary(probs, ratio, steps, 1)["confident_step"] == 30  # the confident point stays the first
    from trav_gui.engine.runs.record import ModelRef, record_run
    ten = np.zeros((12, 1, 10))
    ten[:, 0, :2] = probs
    record = record_run([ModelRef("r", "a" * 64)], np.zeros((28, 28), np.float32), 1, TraversalConfig(steps=11),
                        steps, ten, ratio[:, None], l2=l2[:, None])
    assert record["extra"]["realism"]["r"]["most_realistic_step"] == 100


def test_the_judge_is_shipped_listed_as_a_judge_and_never_traversed(tmp_path, capsys):
    judge = next(c for c in list_models() if c.name == "judge")
    assert judge.card.is_judge and judge.dataset == "mnist" and judge.card.architecture == "wide_cnn"
    assert load_model(realism.judge_name("mnist"))(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    assert main(["models"]) == 0
    assert any(line.startswith("judge") and " judge " in line for line in capsys.readouterr().out.splitlines())
    assert main(["traverse", "--model", "robust", "--model", "judge", "--index", "0", "--target", "3",
                 "--steps", "2", "--out", str(tmp_path / "o")]) == 2
    assert "judge of realism" in capsys.readouterr().err


def test_traverse_writes_realism_into_npz_csv_run_record_and_stops_at_the_confident_point(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["traverse", "--model", "robust", "--index", "15", "--target", "0", "--steps", "120",
                 "--stop-at", "confident", "--out", str(out)]) == 0
    z = np.load(out / "robust.npz")
    t = len(z["step"])
    assert z["judge_probs"].shape == (t, 10) and z["nn_ratio"].shape == (t,)
    record = json.loads((out / "run.json").read_text())
    r = record["extra"]["realism"]["robust"]
    assert r["confident_step"] == int(z["step"][-1])  # stopped right there
    assert z["probs"][-1, 0] >= 0.9 > z["probs"][-2, 0]
    assert r["flip_step"] <= r["confident_step"] <= r["most_realistic_step"]
    # The numbers are the scorer's on the saved frames.
    again = realism.RealismScorer(dataset="mnist").score(z["frames"], 0)
    assert np.allclose(again.nn_ratio, z["nn_ratio"], atol=1e-5)
    assert np.allclose(again.judge_probs, z["judge_probs"], atol=1e-5)
    rows = read_steps_csv(out / "steps.csv")
    assert rows[-1]["nn_ratio"] == pytest.approx(float(z["nn_ratio"][-1]), rel=1e-6)
    assert rows[-1]["judge_p0"] == pytest.approx(float(z["judge_probs"][-1, 0]), rel=1e-5)


def test_the_worker_not_the_gui_thread_judges_and_the_readout_shows_its_numbers(qtbot, gui_models, monkeypatch):
    calls: list[str] = []
    real = realism.RealismScorer.judge_probs

    def spy(self, images):
        calls.append(threading.current_thread().name)
        return real(self, images)

    monkeypatch.setattr(realism.RealismScorer, "judge_probs", spy)
    window = make_window(qtbot, gui_models)
    play_to_end(qtbot, window, example=15, target=0, steps=30)
    qtbot.wait(100)  # the last realism batch follows its frames
    assert calls and threading.main_thread().name not in calls
    h = window.history
    # Every frame has its nearest-real ratio; the judge saw the newest frame of each batch it
    # was sent (at least the last one), not every frame.
    assert h.has_realism and np.isfinite(h.nn_ratio).all()
    judged = np.isfinite(h.judge_probs[:, 0, 0])
    assert judged[-1] and 1 <= judged.sum() <= len(h)
    scorer = window.scorers.get("mnist")
    k = int(np.flatnonzero(judged)[0])
    assert np.allclose(h.judge_probs[k], scorer.judge_probs(h.images[k]), atol=1e-5)
    last = len(h) - 1
    verdict = int(h.judge_probs[last, 0].argmax())
    text = window.view.columns[0].prediction.text
    assert "judge: <b" in text and f">{verdict}</b>, {100 * h.judge_probs[last, 0, verdict]:.0f} %" in text
    assert f"{h.nn_ratio[last, 0]:.2f}×" in text
    record = window.current_record()
    assert set(record["extra"]["realism"]) == {"robust", "standard"}
    assert record["extra"]["realism"]["robust"]["most_realistic_step"] == h.most_realistic()[0]
    # Switched off, a run has no realism at all.
    window.menu_actions.realism.setChecked(False)
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.play()
    assert not window.history.has_realism and "judge" not in window.view.columns[0].prediction.text


def test_an_old_run_record_without_realism_or_data_set_still_opens_and_replays(qtbot, gui_models, tmp_path):
    from trav_gui.engine.runs.record import write_run_record

    window = make_window(qtbot, gui_models)
    play_to_end(qtbot, window, example=3, steps=4)
    record = window.current_record()
    del record["extra"]  # as records were written before realism and data sets
    write_run_record(tmp_path / "old.json", record)
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        assert window.open_run_file(tmp_path / "old.json")
    assert window.dataset == "mnist" and len(window.history) == 5
    assert window.current_record()["extra"]["realism"]["robust"]["flip_step"] == window.history.flip_steps()[0]


def test_the_app_export_judges_the_frames_not_judged_live(qtbot, gui_models, tmp_path):
    window = make_window(qtbot, gui_models)
    play_to_end(qtbot, window, example=15, target=0, steps=60)
    assert window.history.has_realism
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(tmp_path / "out")
    z = np.load(tmp_path / "out" / "robust.npz")
    rows = read_steps_csv(tmp_path / "out" / "steps.csv")
    assert len(rows) == 2 * 61
    judge = np.array([[r[f"judge_p{c}"] for c in range(10)] for r in rows])
    assert np.isfinite(judge).all() and np.allclose(judge.sum(1), 1, atol=1e-5)
    scorer = window.scorers.get("mnist")
    first = [r for r in rows if r["model"] == "robust" and r["step"] == 1][0]
    expected = scorer.judge_probs(window.history.images[1, 0])
    assert np.allclose([first[f"judge_p{c}"] for c in range(10)], expected, atol=1e-5)
    robust_rows = np.array([r["model"] == "robust" for r in rows])
    assert z["judge_probs"].shape == (61, 10) and np.allclose(z["judge_probs"], judge[robust_rows], atol=1e-6)
    assert z["nn_ratio"].shape == (61,) and np.isfinite(z["nn_ratio"]).all()


def test_m_jumps_to_the_most_realistic_step_of_a_shipped_model(qtbot):
    from trav_gui.paths import models_dir

    window = make_window(qtbot, models_dir())
    play_to_end(qtbot, window, example=15, target=0, steps=90)
    h = window.history
    confident, best = h.confident_points(), h.most_realistic()
    assert confident[0] is not None and best[0] is not None and best[0] >= confident[0]
    assert window.jump_to_most_realistic() == best[0]
    assert int(h.steps[window.timeline.value()]) == best[0]
    column = window.view.columns[0]
    assert column.realism.best_line.isVisible() and int(column.realism.best_line.value()) == best[0]
    assert int(column.realism.confident_line.value()) == confident[0]


def test_the_realistic_recipe_can_be_ticked_and_played_beside_robust_and_standard(qtbot):
    from trav_gui.paths import models_dir

    window = make_window(qtbot, models_dir())
    cards = {c.name: c for c in window.selector.entries()}
    assert "realistic" in cards and "judge" not in cards and "judge-standard" not in cards
    window.selector.set_selected([cards[n].key for n in ("robust", "standard", "realistic")])
    play_to_end(qtbot, window, example=15, target=0, steps=30)
    names = [c.name for c in window.selector.selected_entries()]
    assert sorted(names) == ["realistic", "robust", "standard"]
    h = window.history
    assert len(window.view.columns) == 3 and h.images.shape[1] == 3
    mine, plain = names.index("realistic"), names.index("robust")
    assert not np.allclose(h.images[-1, mine], h.images[-1, plain])  # the recipe took its own steps
    assert np.isfinite(h.nn_ratio[:, mine]).all()  # and is judged like any model


def test_a_recipe_s_tooltip_names_what_it_trades_so_two_recipes_can_be_told_apart(qtbot):
    """`realistic-stochastic` reads as more successful than `realistic` in the list; its tooltip says
    what it costs (the two-sample test, the start kept) and where each is weakest."""
    from trav_gui.paths import models_dir
    from trav_gui.qt.model_selector import card_tooltip

    window = make_window(qtbot, models_dir())
    items = {window.selector._entries[it.data(Qt.ItemDataRole.UserRole)].name: it
             for it in window.selector._items()}
    tips = {name: items[name].toolTip() for name in ("realistic", "realistic-stochastic", "robust")}
    for name in ("realistic", "realistic-stochastic"):
        realism = next(e for e in list_models() if e.name == name).card.evaluation.realism
        assert tips[name] == card_tooltip(window.selector._entries[items[name].data(Qt.ItemDataRole.UserRole)])
        seeds = realism["two_sample_last_seeds"]  # the test's mean over its seeds, not one draw
        assert len(seeds) == 10 and realism["two_sample_last"] == seeds[0]
        assert f"told from real images {100 * sum(seeds) / len(seeds):.0f}% of the time (two-sample test, mean of 10" \
            in tips[name]
        assert f"SSIM to the start at the confident point {realism['ssim']:.2f}" in tips[name]
        last = realism["success_map"]["by_start_class_last"]  # what the user is left with comes first
        worst = min(last, key=last.get)
        assert (f"by start class {100 * min(last.values()):.0f}–{100 * max(last.values()):.0f}% "
                f"(weakest: start class {worst}) at the endpoint, ") in tips[name]
        confident = realism["success_map"]["by_start_class"]
        assert f"(weakest: start class {min(confident, key=confident.get)}) at the confident point" in tips[name]
    told = {name: int(re.search(r"told from real images (\d+)%", tips[name]).group(1))
            for name in ("realistic", "realistic-stochastic")}
    assert told["realistic-stochastic"] > told["realistic"]  # what the stochastic pull costs, read from the list
    assert "(450 traversals of 300 steps;" in tips["realistic"]  # a retry needs room: its figures' steps
    assert "renoise" not in tips["robust"] and "told from real" not in tips["robust"]  # a model has no realism
    assert "robust 65.1% at ε 2.0" in tips["robust"]


@pytest.mark.parametrize("fraction, shown", [(0.996, "99.6%"), (1.0, "100%"), (0.9995, "99.9%"), (0.953, "95%"),
                                             (0.755, "76%"), (0.003, "0.3%"), (0.0, "0%"), (0.5, "50%")])
def test_a_measured_figure_is_never_rounded_to_a_claim_of_all_or_none(fraction, shown):
    from trav_gui.qt.model_selector import percent

    assert percent(fraction) == shown


def test_no_recipe_s_tooltip_rounds_a_figure_below_100_percent_up_to_100(qtbot):
    from trav_gui.qt.model_selector import card_tooltip

    recipes = [e for e in list_models() if e.card.kind == "recipe" and e.card.evaluation.realism]
    assert recipes
    for entry in recipes:
        realism = entry.card.evaluation.realism
        last = realism.get("success_last_by_judge", {}).get("judge")
        tip = card_tooltip(entry)
        if last is not None and 0.995 <= last < 1.0:  # what "100%" would have claimed
            assert f"{100 * last:.1f}% at the endpoint" in tip
        if last is not None and last < 1.0:
            assert "100% at the endpoint" not in tip
