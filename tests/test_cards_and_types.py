"""Typed model cards, listing entries, the recipe protocol and the one atomic writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from trav_gui.engine import files
from trav_gui.engine.core.traversal import OwnSteps, TraversalConfig, stack_frames, traverse
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.card import ModelCard, ModelEntry, read_card
from trav_gui.engine.models.conventions import Conventions, adapt
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import entry_of, list_models, load_model
from trav_gui.engine.models.weights import save_model
from trav_gui.engine.runs.record import ModelRef, record_run
from trav_gui.paths import models_dir, priors_dir


@pytest.mark.parametrize("card_file", sorted([*models_dir().glob("*.json"), *priors_dir().glob("*.json")]),
                         ids=lambda p: p.name)
def test_every_shipped_card_reads_typed_and_writes_back_unchanged(card_file):
    raw = json.loads(card_file.read_text())
    card = read_card(card_file, strict=True)
    assert isinstance(card, ModelCard)
    assert card.to_json() == raw  # nothing dropped, nothing added: a card read and written is the same
    assert card.dataset == raw.get("dataset", "mnist")


def test_a_card_is_checked_where_it_is_read(tmp_path):
    weights = tmp_path / "m.safetensors"
    save_model(SmallCNN(), weights, {"kind": "test"}, "small_cnn")
    card_file = weights.with_suffix(".json")
    raw = json.loads(card_file.read_text())
    for bad, words in [({"dataset": "cifar10"}, '"dataset" must be one of mnist, fashion-mnist'),
                       ({"evaluation": {"clean_accuracy": "high"}}, "evaluation.clean_accuracy"),
                       ({"sha256": 7}, '"sha256"'),
                       ({"input_shape": [3, 28, 28]}, r'"input_shape" \[3, 28, 28\] is not the shape of mnist images')]:
        card_file.write_text(json.dumps({**raw, **bad}))
        with pytest.raises(ModelLoadError, match=words):
            read_card(weights, strict=True)
        assert read_card(weights) is None  # a listing skips it instead
        assert list_models(tmp_path) == []
    # A grey model whose card names a colour world: refused by the shapes, and told which world fits.
    card_file.write_text(json.dumps({**raw, "dataset": "colored-mnist"}))
    with pytest.raises(ModelLoadError, match=r"as built for colored-mnist images, 3x28x28\); its tensors fit small_cnn "
                                             r"for mnist: correct the card's \"dataset\""):
        load_model(weights)
    card_file.write_text(json.dumps(raw))
    [entry] = list_models(tmp_path)
    assert entry == ModelEntry("m", weights, "folder", read_card(weights))
    assert entry.key == str(weights) and entry.dataset == "mnist" and entry.card.kind == "test"


def test_saving_refuses_a_card_that_would_not_read_back_and_writes_nothing(tmp_path):
    weights = tmp_path / "m.safetensors"
    with pytest.raises(ModelLoadError, match='"dataset" must be one of'):
        save_model(SmallCNN(), weights, {"dataset": "cifar10"}, "small_cnn")
    assert list(tmp_path.iterdir()) == []


def test_atomic_paths_renames_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.json"
    a.write_bytes(b"old a")
    with pytest.raises(RuntimeError):
        with files.atomic_paths(a, b) as (ta, tb):
            ta.write_bytes(b"new a")
            tb.write_bytes(b"new b")
            raise RuntimeError("crash before the rename")
    assert a.read_bytes() == b"old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]  # no temporary file left
    with files.atomic_paths(a, b) as (ta, tb):
        ta.write_bytes(b"new a")
        tb.write_bytes(b"new b")
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json"]


def test_an_entry_without_a_card_gets_an_empty_one_and_in_memory_entries_have_no_path(tmp_path):
    weights = tmp_path / "bare.safetensors"
    save_model(SmallCNN(), weights, {}, "small_cnn")
    weights.with_suffix(".json").unlink()
    entry = entry_of(weights)
    assert entry.name == "bare" and entry.card == ModelCard() and entry.dataset == "mnist"
    memory = ModelEntry("mine", None, "memory", ModelCard(sha256="a" * 64))
    assert memory.key == "memory:mine" and memory.to_json()["path"] is None


def test_the_recipe_is_recognised_by_its_protocol_and_a_wrapped_recipe_is_refused():
    recipe = load_model("realistic")
    plain = load_model("robust")
    assert isinstance(recipe, OwnSteps) and not isinstance(plain, OwnSteps)
    x0 = np.zeros((28, 28), np.float32)
    wrapped = adapt(recipe, Conventions(scale=255.0))  # a wrapper without the recipe's own steps
    assert not isinstance(wrapped, OwnSteps)
    with pytest.raises(ValueError, match="wraps a Guided, which takes its own steps"):
        next(traverse([plain, wrapped], x0, 3, TraversalConfig(steps=2)))


def test_a_recipe_takes_its_own_steps_in_traverse():
    """The recipe's frames differ from its classifier's plain steps: its steps were taken."""
    recipe = load_model("realistic")
    x0 = load_x0()
    config = TraversalConfig(steps=5)
    own = stack_frames(list(traverse([recipe], x0, 3, config)))
    plain = stack_frames(list(traverse([_Plain(recipe)], x0, 3, config)))
    assert own["images"].shape == plain["images"].shape
    assert not np.allclose(own["images"][-1], plain["images"][-1])


class _Plain(nn.Module):
    """A recipe's classifier alone, as a plain model (holding it as an attribute, not a submodule)."""

    def __init__(self, guided: nn.Module) -> None:
        super().__init__()
        self.__dict__["guided"] = guided
        self.anchor = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.guided(x)


def load_x0() -> np.ndarray:
    from trav_gui.engine.data import datasets

    images, _ = datasets.test_set("mnist")
    return images[7].astype(np.float32) / 255.0


def test_one_record_builder_gives_the_summary_for_every_model():
    probs = np.zeros((4, 2, 10), np.float32)
    probs[:, :, 5] = 1.0
    probs[2:, 0] = np.eye(10)[3]  # the first model flips (and is confident) at step 2
    steps = np.array([0, 1, 2, 3])
    ratio = np.array([[2.0, 2.0], [1.5, 2.0], [1.2, 2.0], [1.1, 2.0]])
    record = record_run([ModelRef("a", "a" * 64), ModelRef("b", "b" * 64)], np.zeros((28, 28), np.float32), 3,
                        TraversalConfig(steps=3), steps, probs, ratio, test_index=4, extra={"dataset": "mnist"})
    extra = record["extra"]
    assert extra["steps_taken"] == 3 and extra["flip_step"] == {"a": 2, "b": None} and extra["dataset"] == "mnist"
    assert extra["realism"]["a"] == {"flip_step": 2, "confident_step": 2, "confident_prob": 0.9,
                                     "most_realistic_step": 3}
    assert extra["realism"]["b"]["flip_step"] is None and record["start"]["test_index"] == 4


def test_a_users_card_declares_its_input_as_a_typed_spec_and_round_trips():
    from trav_gui.engine.models.card import InputSpec

    raw = {"architecture": "lenet5", "dataset": "mnist", "class_names": [str(k) for k in range(10)],
           "input": {"layout": "image", "range": [0, 255], "mean": 33.3, "std": 78.6}, "output": "logits"}
    card = ModelCard.model_validate(raw)
    assert card.input == InputSpec(layout="image", range=(0, 255), mean=33.3, std=78.6)
    assert card.declares_conventions and card.to_json() == raw
    assert ModelCard.model_validate({**raw, "input": {"layout": "flat"}}).input.range == (0, 1)
    for bad, words in [({"layout": "image", "mean": [0.1307], "std": "x"}, '"input.std" must be a finite number'),
                       ({"layout": "image", "range": [True, 1]}, '"input.range" must be'),
                       ({"layout": "image", "zoom": 2}, "unknown entries \\['zoom'\\]")]:
        with pytest.raises(ValueError, match=words):
            ModelCard.model_validate({**raw, "input": bad})
    assert ModelCard.model_validate({**raw, "input": {"layout": "image", "mean": [0.1307], "std": [0.3081]}}
                                    ).input.mean == 0.1307  # torchvision's Normalize((0.1307,), (0.3081,))
