"""The success map: its cells from known traversal rows, its files, and continuing a stopped map."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trav_gui.cli import main
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.output import successmap as sm


def _row(source, target, reached, judge, nn, nn_last, success, index=0, success_last=None):
    return {"start_index": index, "source": source, "target": target, "reached": reached,
            "confident_step": 5 if reached else -1, "judge_class": judge, "nn_ratio": nn, "nn_ratio_last": nn_last,
            "success": success, "judge_class_last": judge,
            "success_last": success if success_last is None else success_last}


def test_cells_are_the_shares_of_their_traversals():
    rows = [_row(3, 5, True, 5, 1.0, 1.5, True), _row(3, 5, True, 8, 1.2, 1.2, False),
            _row(3, 5, False, -1, np.nan, 2.0, False), _row(3, 5, True, 5, 2.0, 4.0, False),
            _row(0, 1, True, 1, 0.9, 0.9, True)]
    m = sm.map_from_rows(rows, "x", "mnist", 4, TraversalConfig(steps=10))
    assert m.traversals[3, 5] == 4 and m.traversals[0, 1] == 1 and m.traversals.sum() == 5
    assert m.reach[3, 5] == pytest.approx(0.75) and m.success[3, 5] == pytest.approx(0.25)
    assert m.judge_agree[3, 5] == pytest.approx(2 / 3)  # of those that got confident
    assert m.growth[3, 5] == pytest.approx(1.5)  # median of 1.5, 1.0, 2.0
    assert np.isnan(m.success[3, 3]) and np.isnan(m.success[2, 7])  # diagonal, and cells never run
    assert m.overall() == pytest.approx(2 / 5)
    by_source = m.by_source()
    assert by_source[3] == pytest.approx(0.25) and by_source[0] == 1.0 and np.isnan(by_source[1])
    assert sm.weakest_pairs(m, 1) == [(3, 5, 0.25)]


def test_success_at_the_last_frame_is_counted_apart_from_the_confident_point():
    rows = [_row(3, 5, True, 5, 1.0, 1.0, True, success_last=False), _row(3, 5, True, 5, 1.0, 1.0, False, success_last=True),
            _row(3, 5, True, 5, 1.0, 1.0, False, success_last=True), _row(0, 1, True, 1, 0.9, 0.9, True, success_last=True)]
    m = sm.map_from_rows(rows, "x", "mnist", 3, TraversalConfig(steps=10))
    assert m.success[3, 5] == pytest.approx(1 / 3) and m.success_last[3, 5] == pytest.approx(2 / 3)
    assert m.overall() == pytest.approx(0.5) and m.overall(last=True) == pytest.approx(0.75)
    assert m.by_source(last=True)[3] == pytest.approx(2 / 3) and m.by_source()[3] == pytest.approx(1 / 3)


def test_the_starts_are_the_first_of_each_class_before_the_held_out_pool():
    from trav_gui.engine.data.datasets import test_set

    _, labels = test_set("mnist")
    starts = sm.successmap_starts("mnist", 3)
    assert sorted(starts) == list(range(10))
    for c, idx in starts.items():
        assert len(idx) == 3 and all(labels[i] == c and i < sm.STARTS_POOL for i in idx)
        assert idx == [int(i) for i in np.flatnonzero(labels == c)[:3]]
    with pytest.raises(ValueError, match="1 or more"):
        sm.successmap_starts("mnist", 0)


def test_a_stopped_map_keeps_finished_classes_and_continues_where_it_stopped(tmp_path):
    model = load_model("robust")
    config = TraversalConfig(steps=4)
    steps_seen = []

    def stop_in_the_second_class():
        steps_seen.append(1)
        return len(steps_seen) > (config.steps + 1) + 2  # the first class done, then 2 steps

    with pytest.raises(sm.SuccessMapCancelled):
        sm.run_successmap(model, "robust", "mnist", 1, config, tmp_path, should_stop=stop_in_the_second_class)
    paths = sm.successmap_paths(tmp_path, "robust")
    kept = sm.read_traversals(paths["traversals"])
    assert {r["source"] for r in kept} == {0} and len(kept) == 9  # whole classes only
    assert not paths["png"].exists()
    kept_text = paths["traversals"].read_text()
    progress = []
    result = sm.run_successmap(model, "robust", "mnist", 1, config, tmp_path,
                               progress=lambda done, total, what: progress.append(total))
    assert set(progress) == {9 * (config.steps + 1)}  # class 0 was not traversed again
    rows = sm.read_traversals(paths["traversals"])
    assert len(rows) == 90 and paths["traversals"].read_text().startswith(kept_text)
    assert result.traversals.sum() == 90 and (np.diag(result.traversals) == 0).all()
    with open(paths["cells"], newline="") as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 90 and set(cells[0]) == set(sm.CELL_FIELDS)
    assert paths["png"].stat().st_size > 1000
    # Other settings: the old traversals are not mixed in.
    other = sm.run_successmap(model, "robust", "mnist", 1, TraversalConfig(steps=3), tmp_path)
    assert json.loads(paths["settings"].read_text())["config"]["steps"] == 3 and other.traversals.sum() == 90


def test_successmap_command_writes_the_map_and_names_the_weakest_pairs(tmp_path, capsys):
    assert main(["successmap", "--model", "robust", "--starts", "1", "--steps", "3", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "weakest pairs" in out
    assert (tmp_path / "successmap_robust.png").is_file() and (tmp_path / "successmap_robust.csv").is_file()
    assert main(["successmap", "--model", "robust", "--starts", "0", "--out", str(tmp_path)]) == 2
    assert "--starts" in capsys.readouterr().err


def test_a_map_of_a_changed_model_of_the_same_name_starts_over(tmp_path):
    import copy

    import torch

    model = load_model("robust")
    config = TraversalConfig(steps=2)
    sm.run_successmap(model, "m", "mnist", 1, config, tmp_path)
    totals = []
    sm.run_successmap(model, "m", "mnist", 1, config, tmp_path, progress=lambda done, total, what: totals.append(total))
    assert totals == []  # the same model: every class is kept, none traversed again
    changed = copy.deepcopy(model)
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert sm.model_fingerprint(changed) != sm.model_fingerprint(model)
    sm.run_successmap(changed, "m", "mnist", 1, config, tmp_path, progress=lambda done, total, what: totals.append(total))
    assert set(totals) == {10 * (config.steps + 1)}  # another model under that name: all ten again
    assert len(sm.read_traversals(sm.successmap_paths(tmp_path, "m")["traversals"])) == 90


def test_a_map_made_by_other_engine_code_starts_over(tmp_path, monkeypatch):
    model, config, totals = load_model("robust"), TraversalConfig(steps=2), []
    sm.run_successmap(model, "m", "mnist", 1, config, tmp_path)
    assert json.loads(sm.successmap_paths(tmp_path, "m")["settings"].read_text())["engine"] == sm.engine_fingerprint()
    monkeypatch.setattr(sm, "engine_fingerprint", lambda: "0" * 64)  # as after an upgrade or an edit
    sm.run_successmap(model, "m", "mnist", 1, config, tmp_path, progress=lambda done, total, what: totals.append(total))
    assert set(totals) == {10 * (config.steps + 1)}  # the same model, other code: all ten again


def test_the_last_frame_is_judged_on_its_own():
    from trav_gui.engine.core.traversal import traverse
    from trav_gui.engine.data.datasets import test_set
    from trav_gui.engine.realism import CONFIDENT_PROB, RealismScorer

    model, scorer = load_model("robust"), RealismScorer(dataset="mnist")
    images, _ = test_set("mnist")
    start = sm.successmap_starts("mnist", 2)[4]
    x0 = np.repeat(images[start].astype(np.float32) / 255.0, 9, axis=0)
    targets = np.tile([t for t in range(10) if t != 4], 2)
    config = TraversalConfig(steps=150)  # robust runs on well past its confident points
    got = sm._measure(model, x0, targets, config, scorer, (1, 28, 28), None, None)
    last = list(traverse([model], x0, targets, config, shape=(1, 28, 28)))[-1].images[0]
    judged = scorer.judge_probs(last).argmax(-1)
    nn = np.array([scorer.reference.nearest(last[i:i + 1], int(t))[0][0] for i, t in enumerate(targets)])
    reached = got["reached"]
    assert reached.sum() >= 10
    expected = reached & (judged == targets) & (nn <= scorer.reference.p90[targets])
    assert (got["success_last"] == expected).all() and (got["judge_class_last"][reached] == judged[reached]).all()
    assert np.allclose(got["nn_ratio_last"], nn, rtol=1e-4)
    assert (got["success_last"] != got["success"]).any()  # the two verdicts are not one copied


def test_a_recipe_s_settings_are_part_of_its_fingerprint():
    import copy
    from dataclasses import replace

    recipe = load_model("realistic")
    unfinished = copy.copy(recipe)  # the same weights
    unfinished.recipe = replace(recipe.recipe, finish_sigmas=(), critic=None, critic_pull=0.0, retry=None)
    assert sm.model_fingerprint(unfinished) != sm.model_fingerprint(recipe)
    unpulled = copy.copy(recipe)
    unpulled.recipe = replace(recipe.recipe, critic_pull=0.0)
    assert sm.model_fingerprint(unpulled) != sm.model_fingerprint(recipe)
    once = copy.copy(recipe)
    once.recipe = replace(recipe.recipe, retry=None)
    assert sm.model_fingerprint(once) != sm.model_fingerprint(recipe)
    assert sm.model_fingerprint(copy.copy(recipe)) == sm.model_fingerprint(recipe)


@pytest.mark.parametrize("name", ["realistic", "realistic-stochastic"])
def test_a_shipped_recipe_s_card_carries_its_committed_success_map(name):
    """A recipe's card (its tooltip in the app) gives its success by start class: those are the figures of
    the map in docs/, and that map was made with this recipe (its fingerprint: weights and settings)."""
    from pathlib import Path

    from trav_gui.engine.models.loading import list_models

    docs = Path(__file__).resolve().parents[1] / "docs"
    card = next(e for e in list_models() if e.name == name).card.evaluation.realism["success_map"]
    made = json.loads((docs / f"successmap_{name}.json").read_text())
    assert made["fingerprint"] == sm.model_fingerprint(load_model(name)) and made["per_class"] == 20
    rows = sm.read_traversals(docs / f"successmap_{name}_traversals.csv")
    m = sm.map_from_rows(rows, name, "mnist", 20, TraversalConfig.from_dict(made["config"]))
    assert card["traversals"] == len(rows) == 1800 and card.get("steps", 200) == made["config"]["steps"]
    for field, by, last in (("success", "by_start_class", False), ("success_last", "by_start_class_last", True)):
        assert card[field] == pytest.approx(m.overall(last), abs=5e-5)
        for source, share in enumerate(m.by_source(last)):
            assert card[by][str(source)] == pytest.approx(share, abs=5e-5)
