"""Run records written before the engine was cut into wings still read, match and replay.

``tests/data/run_before_wings_*.json`` were written by ``trav-gui traverse`` at commit 2c3563e
(``--index 7 --target 3 --model robust --model standard --steps 80`` and ``--dataset
fashion-mnist --index 9 --target 9 --model fashion-robust --model fashion-standard --steps 80``),
when the start's index was stored as ``start.mnist_index``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trav_gui.engine.core.traversal import stack_frames, traverse
from trav_gui.engine.data import datasets
from trav_gui.engine.models.loading import list_models, load_model, model_sha256
from trav_gui.engine.realism import RealismScorer, summary
from trav_gui.engine.runs.record import RunRecordError, read_run_record, validate_run_record
from trav_gui.engine.runs.replay import match_record_models
from trav_gui.paths import models_dir

from helpers import make_window

DATA = Path(__file__).parent / "data"
OLD = {"mnist": DATA / "run_before_wings_mnist.json", "fashion-mnist": DATA / "run_before_wings_fashion.json"}


def _shipped_by_sha(record):
    return match_record_models(record, list_models(models_dir()), lambda c: model_sha256(c.key))


@pytest.mark.parametrize("dataset, index", [("mnist", 7), ("fashion-mnist", 9)])
def test_an_old_record_reads_with_its_test_index(dataset, index):
    raw = json.loads(OLD[dataset].read_text())
    assert "mnist_index" in raw["start"] and "test_index" not in raw["start"]  # really the old layout
    record = read_run_record(OLD[dataset])
    assert record.test_index == index
    images, _ = datasets.test_set(dataset)
    assert np.array_equal(record.start_image, images[index].astype(np.float32) / 255.0)


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_an_old_record_replays_to_the_steps_it_recorded(dataset):
    """The engine, re-run from the record alone, flips, becomes confident and looks most real at the
    recorded steps (every one of them within the run: the record was made to say something)."""
    record = read_run_record(OLD[dataset])
    cards = _shipped_by_sha(record)
    models = [load_model(c.key) for c in cards]
    arrays = stack_frames(list(traverse(models, record.start_image, record.target, record.config)))
    ratio = RealismScorer(dataset=dataset).score(arrays["images"][:, :, 0], record.target).nn_ratio
    recorded = record.raw["extra"]["realism"]
    assert len(recorded) == len(record.models) == 2
    for j, ref in enumerate(record.models):
        assert None not in recorded[ref.name].values()
        assert summary(arrays["probs"][:, j, 0], ratio[:, j], arrays["step"], record.target) == recorded[ref.name]


def test_the_old_and_the_new_name_of_the_index_must_agree():
    raw = json.loads(OLD["mnist"].read_text())
    raw["start"]["test_index"] = 7
    assert validate_run_record(raw).test_index == 7
    raw["start"]["test_index"] = 8
    with pytest.raises(RunRecordError, match="disagree"):
        validate_run_record(raw)
    raw["start"].pop("test_index")
    raw["start"]["mnist_index"] = -1
    with pytest.raises(RunRecordError, match="start.mnist_index"):
        validate_run_record(raw)


def test_the_app_opens_an_old_fashion_record_and_replays_it(qtbot):
    window = make_window(qtbot, models_dir())
    assert window.dataset == "mnist"
    assert window.open_run_file(OLD["fashion-mnist"], play=False)
    assert window.dataset == "fashion-mnist"
    assert [c.name for c in window.selector.selected_entries()] == ["fashion-robust", "fashion-standard"]
    assert window.input_panel.test_index == 9 and window.target_picker.target == 9
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.play()
    record = window.current_record()
    assert record["start"]["test_index"] == 9 and record["config"]["steps"] == 80
    old = read_run_record(OLD["fashion-mnist"]).raw["extra"]["realism"]
    for name in ("fashion-robust", "fashion-standard"):
        assert record["extra"]["realism"][name]["flip_step"] == old[name]["flip_step"]
        assert record["extra"]["realism"][name]["confident_step"] == old[name]["confident_step"]
