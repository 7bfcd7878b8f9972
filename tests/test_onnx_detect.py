"""An ONNX model without a card: its input convention and output kind are detected by measuring
test accuracy (trav-gui models add, File → Add model…), and a fixed batch of 2 is run in chunks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")

from helpers import mnist_images, train_lenet  # noqa: E402

from trav_gui.cli import main  # noqa: E402
from trav_gui.engine.models.errors import ModelLoadError  # noqa: E402
from trav_gui.engine.models.loading import load_model  # noqa: E402
from trav_gui.engine.models.onnx_detect import CLEARLY_LOWER, detect_onnx, output_kind  # noqa: E402
from trav_gui.engine.models.user_models import add_user_model, detected_summary  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
MEAN, STD = 0.1307, 0.3081


def export(model, path, batch=None, example=None):
    """The legacy exporter with a dynamic batch, or a fixed batch of ``batch`` images; no card."""
    x = example if example is not None else torch.rand(batch or 1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=None if batch else {"x": {0: "n"}, "y": {0: "n"}})
    assert not path.with_suffix(".json").exists()
    return path


@pytest.fixture(scope="module")
def normalized_lenet():
    """A LeNet-5 trained (300 steps, on the shipped test digits) on normalized pixels (x - 0.1307) / 0.3081."""
    return train_lenet(MEAN, STD, seed=1)


def test_a_lenet_trained_on_plain_pixels_is_detected_as_such_and_kept_with_a_card(trained_lenet, tmp_path,
                                                                                 user_models, capsys):
    path = export(trained_lenet, tmp_path / "plain.onnx")
    found = detect_onnx(path)
    assert found.dataset == "mnist" and found.label == "pixels in [0, 1]"
    assert found.conventions.mean is None and found.conventions.scale == 1 and found.conventions.output == "logits"
    assert found.accuracy > 0.8 and found.table[0][1] == found.label
    assert found.table[1][3] >= CLEARLY_LOWER * found.table[0][3]  # clearly the lowest cross-entropy
    assert main(["models", "add", str(path)]) == 0
    out = capsys.readouterr().out
    assert "detected its input as pixels in [0, 1] and its output as logits" in out
    card = json.loads((user_models / "plain.json").read_text())
    assert card["input"] == {"layout": "image", "range": [0, 1]} and card["output"] == "logits"
    assert card["input_detected"]["chosen"] == "pixels in [0, 1]" and len(card["input_detected"]["accuracies"]) >= 4
    model = load_model("plain")  # the kept copy loads from its written card like any user model
    x, _ = mnist_images(8)
    torch.testing.assert_close(model(x), trained_lenet(x), atol=1e-4, rtol=0)


def test_a_lenet_trained_on_normalized_pixels_with_a_softmax_is_detected(normalized_lenet, tmp_path, user_models):
    class Deployed(nn.Module):  # normalized input, probabilities out: what is often exported
        def __init__(self):
            super().__init__()
            self.net = normalized_lenet

        def forward(self, x):
            return torch.softmax(self.net(x), -1)

    path = export(nn.Sequential(Deployed()).eval(), tmp_path / "normed.onnx")
    entry, model = add_user_model(path)
    card = entry.card.to_json()
    assert card["input"]["mean"] == pytest.approx(MEAN) and card["input"]["std"] == pytest.approx(STD)
    assert card["output"] == "probabilities" and entry.card.evaluation.clean_accuracy > 0.8
    assert "normalized with MNIST's mean/std" in detected_summary(entry.card)
    x, _ = mnist_images(8)  # the app's pixels in [0, 1] go in; the log of its probabilities comes out
    torch.testing.assert_close(model(x), torch.log_softmax(normalized_lenet((x - MEAN) / STD), -1),
                               atol=1e-4, rtol=1e-4)


def test_a_graph_exported_for_a_fixed_batch_of_2_runs_in_chunks(trained_lenet, tmp_path, user_models):
    path = export(trained_lenet, tmp_path / "pair.onnx", batch=2)
    entry, model = add_user_model(path)  # detected too: it has no card
    x, _ = mnist_images(7)  # an odd count: the last chunk is filled up and its extra output dropped
    got = model(x)
    assert got.shape == (7, 10)
    torch.testing.assert_close(got, trained_lenet(x), atol=1e-4, rtol=0)
    probe = x.clone().requires_grad_(True)  # gradients reach every image, the padded last one too
    (grad,) = torch.autograd.grad(model(probe)[:, 3].sum(), probe)
    assert (grad.flatten(1).abs().sum(1) > 0).all()


def test_an_implausible_model_is_refused_with_the_table(tmp_path):
    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    nn.init.zeros_(untrained[1].weight)  # always the same scores: about 10 % right whatever the input
    path = export(untrained, tmp_path / "blank.onnx")
    with pytest.raises(ModelLoadError, match=r"no input convention gives a plausible accuracy.*pixels in 0-255: "):
        detect_onnx(path)
    with pytest.raises(ModelLoadError, match="no input convention"):
        add_user_model(path)


def test_loading_an_onnx_without_a_card_says_models_add_can_write_it(trained_lenet, tmp_path, capsys):
    path = export(trained_lenet, tmp_path / "bare.onnx")
    assert main(["traverse", "--model", str(path), "--index", "0", "--target", "3", "--steps", "2",
                 "--out", str(tmp_path / "run")]) == 2
    assert "trav-gui models add bare.onnx" in capsys.readouterr().err


def test_output_kinds_are_read_off_the_outputs():
    logits = np.random.default_rng(0).normal(size=(20, 10))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert output_kind(logits) == "logits"
    assert output_kind(probs) == "probabilities"
    assert output_kind(np.log(probs)) == "log_probabilities"

