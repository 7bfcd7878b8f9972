"""ONNX models: both torch exporters, external data and its tricks, refusals, and what conversion must not do."""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")

from trav_gui.cli import main  # noqa: E402
from trav_gui.engine.core.traversal import TraversalConfig, traverse  # noqa: E402
from trav_gui.engine.models import onnx_model  # noqa: E402
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import load_model, model_sha256  # noqa: E402
from trav_gui.engine.models.user_models import add_user_model, list_user_models  # noqa: E402

from helpers import mnist_images  # noqa: E402

CARD = {"dataset": "mnist", "class_names": [str(k) for k in range(10)],
        "input": {"layout": "image", "range": [0, 1]}, "output": "logits"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def export(model, path, how, card=CARD, example=None):
    """``how``: "legacy" (TorchScript exporter, dynamic batch), "default" (torch.export, static
    batch of one, weights in ``<name>.data``) or "default-dynamic"."""
    x = example if example is not None else torch.rand(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "legacy":
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
                              dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
        elif how == "default":
            torch.onnx.export(model, (x,), str(path), verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), verbose=False, input_names=["x"],
                              dynamic_shapes=({0: torch.export.Dim("n")},))
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="module")
def default_export(trained_lenet, tmp_path_factory):
    return export(trained_lenet, tmp_path_factory.mktemp("default") / "lenet.onnx", "default")


@pytest.mark.parametrize("how", ["legacy", "default", "default-dynamic"])
def test_a_trained_lenet_from_both_exporters_loads_and_matches(trained_lenet, tmp_path, how):
    path = export(trained_lenet, tmp_path / "lenet.onnx", how)
    if how.startswith("default"):
        assert (tmp_path / "lenet.onnx.data").is_file()  # the default exporter keeps weights beside the graph
    model = load_model(path)
    x, labels = mnist_images(100)
    with torch.no_grad():
        got, want = model(x), trained_lenet(x)
    assert got.shape == (100, 10)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # and onnxruntime agreed at load
    assert (got.argmax(1).numpy() == labels).mean() > 0.8
    frames = list(traverse([model], x[0, 0].numpy(), 3, TraversalConfig(steps=20, step_size=0.5)))
    assert frames[-1].probs[0, 0, 3] > frames[0].probs[0, 0, 3]  # gradients flow through the converted graph


def test_normalization_and_probabilities_are_handled_inside(trained_lenet, tmp_path):
    class Deployed(nn.Module):  # what is often exported: normalization in front, softmax at the end
        def __init__(self):
            super().__init__()
            self.net = trained_lenet

        def forward(self, x):
            return torch.softmax(self.net(x.flatten(1).view(-1, 1, 28, 28) * 0.3081 + 0.1307), -1)

    card = {**CARD, "output": "probabilities", "input": {"layout": "flat", "range": [0, 1], "mean": 0.1307,
                                                         "std": 0.3081}}
    flat = nn.Sequential(Deployed()).eval()
    path = export(flat, tmp_path / "deployed.onnx", "legacy", card=card, example=torch.rand(1, 784))
    model = load_model(path)
    x, _ = mnist_images(16)
    torch.testing.assert_close(model(x), torch.log_softmax(trained_lenet(x), -1), atol=1e-4, rtol=1e-4)


def test_the_parity_check_compares_with_onnxruntime_on_100_test_images(default_export, monkeypatch):
    seen = {}
    real = onnx_model._reference_outputs

    def spy(graph_bytes, input_name, x, batch):
        seen["n"] = len(x)
        return real(graph_bytes, input_name, x, batch)

    monkeypatch.setattr(onnx_model, "_reference_outputs", spy)
    load_model(default_export)
    assert seen["n"] == onnx_model.PARITY_IMAGES == 100


def test_a_conversion_that_differs_from_onnxruntime_is_refused(default_export, monkeypatch):
    import onnx2torch

    real = onnx2torch.convert

    class Off(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + 1e-3

    monkeypatch.setattr(onnx2torch, "convert", lambda m: Off(real(m)))
    with pytest.raises(ModelLoadError, match=r"differs from onnxruntime by up to 0\.001.*100 test images"):
        load_model(default_export)


def test_traverse_accepts_an_onnx_path_and_writes_its_stem(default_export, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["traverse", "--model", str(default_export), "--index", "0", "--target", "3", "--steps", "3",
                 "--out", str(out)]) == 0
    z = np.load(out / "lenet.npz")
    assert z["frames"].shape == (4, 28, 28) and z["probs"].shape == (4, 10)


def test_adding_an_onnx_with_external_data_keeps_a_copy_that_stands_alone(trained_lenet, default_export):
    entry, model = add_user_model(default_export, name="lenet-onnx")
    folder = entry.path.parent
    assert sorted(os.listdir(folder)) == ["lenet-onnx.json", "lenet-onnx.onnx"]  # no .data beside it
    card = entry.card
    assert card.sha256 == model_sha256(entry.path) and card.source_sha256 == model_sha256(default_export)
    assert card.evaluation.clean_accuracy > 0.8 and card.input.layout == "image"
    x, _ = mnist_images(8)
    torch.testing.assert_close(model(x), trained_lenet(x), atol=1e-4, rtol=0)
    again, _ = add_user_model(default_export, name="other-name")  # the same weights are not kept twice
    assert again.name == "lenet-onnx" and len(list_user_models()) == 1


def test_the_sha256_of_a_model_with_external_data_covers_its_data(default_export, tmp_path):
    import shutil

    copy = tmp_path / "lenet.onnx"
    shutil.copy(default_export, copy)
    shutil.copy(str(default_export) + ".data", str(copy) + ".data")
    assert model_sha256(copy) == model_sha256(default_export)
    data = bytearray((tmp_path / "lenet.onnx.data").read_bytes())
    data[-1] ^= 1
    (tmp_path / "lenet.onnx.data").write_bytes(bytes(data))
    assert model_sha256(copy) != model_sha256(default_export)


# ----------------------------------------------------------------------------- external data tricks


def _with_locations(default_export, folder, change):
    """A copy of the default export in ``folder`` whose external data entries ``change`` edited."""
    import shutil

    folder.mkdir(exist_ok=True)
    model = onnx.load(str(default_export), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            change(tensor)
    path = folder / "evil.onnx"
    path.write_bytes(model.SerializeToString())
    shutil.copy(str(default_export) + ".data", folder / "lenet.onnx.data")
    path.with_suffix(".json").write_text(json.dumps(CARD))
    return path


def _set(key, value):
    def change(tensor):
        for entry in tensor.external_data:
            if entry.key == key:
                entry.value = value
                return
        tensor.external_data.add(key=key, value=value)
    return change


@pytest.fixture
def onnx_never_reads_external_data(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("onnx was asked to read external data of a refused model")

    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_model", forbidden)


@pytest.mark.parametrize("change, words", [
    (_set("location", "../lenet.onnx.data"), "not a plain file name"),
    (_set("location", "sub/lenet.onnx.data"), "not a plain file name"),
    (_set("location", "sub\\lenet.onnx.data"), "not a plain file name"),
    (_set("location", "/etc/passwd"), "not a plain file name"),
    (_set("location", "C:lenet.onnx.data"), "not a plain file name"),
    (_set("location", ".."), "not a plain file name"),
    (_set("location", ""), "not a plain file name"),
    (_set("location", "absent.data"), "is missing"),
    (_set("offset", "999999999"), "lies outside"),
    (_set("length", "-5"), "lies outside"),
    (_set("offset", "x"), "non-integer"),
    (_set("basepath", "/etc"), "only \\['checksum', 'length', 'location', 'offset'\\]"),
])
def test_external_data_tricks_are_refused_before_onnx_reads_them(default_export, tmp_path, change, words,
                                                                   onnx_never_reads_external_data):
    (tmp_path / "sub").mkdir()
    path = _with_locations(default_export, tmp_path / "model", change)
    with pytest.raises(ModelLoadError, match=words):
        load_model(path)


def test_a_symlink_out_of_the_folder_is_refused_one_inside_is_followed(default_export, tmp_path,
                                                                       onnx_never_reads_external_data):
    path = _with_locations(default_export, tmp_path / "model", _set("location", "link.data"))
    outside = tmp_path / "outside.data"
    outside.write_bytes((tmp_path / "model" / "lenet.onnx.data").read_bytes())
    (tmp_path / "model" / "link.data").symlink_to(outside)
    with pytest.raises(ModelLoadError, match="link out of the model's folder"):
        load_model(path)
    (tmp_path / "model" / "link.data").unlink()
    (tmp_path / "model" / "link.data").symlink_to(tmp_path / "model" / "lenet.onnx.data")
    assert onnx_model.external_data_files(onnx.load(str(path), load_external_data=False), path.parent,
                                          path.name) == [tmp_path / "model" / "link.data"]


def test_a_fifo_or_too_much_external_data_is_refused(default_export, tmp_path, monkeypatch,
                                                     onnx_never_reads_external_data):
    path = _with_locations(default_export, tmp_path / "model", _set("location", "pipe.data"))
    os.mkfifo(tmp_path / "model" / "pipe.data")  # reading it would block forever
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_model(path)
    path = _with_locations(default_export, tmp_path / "big", lambda t: None)
    monkeypatch.setattr(onnx_model, "MAX_EXTERNAL_BYTES", 1000)
    with pytest.raises(ModelLoadError, match="more than the 1000"):
        load_model(path)


# ----------------------------------------------------------------------------- refusals


def test_a_graph_whose_input_is_not_its_data_sets_shape_is_refused(tmp_path):
    colour = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    colour(torch.rand(1, 3, 32, 32))
    path = export(colour.eval(), tmp_path / "cifar.onnx", "legacy", example=torch.rand(1, 3, 32, 32))
    with pytest.raises(ModelLoadError, match=r"input 'x' has shape \(N, 3, 32, 32\); MNIST images are "
                                             r"\(N, 1, 28, 28\) or flat \(N, 784\)"):
        load_model(path)
    # Named for a colour world of 28×28 images, the 32×32 graph is still refused, by that world's shape.
    path.with_suffix(".json").write_text(json.dumps({**CARD, "dataset": "colored-mnist"}))
    with pytest.raises(ModelLoadError, match=r"Colored-MNIST images are \(N, 3, 28, 28\) or flat \(N, 2352\)"):
        load_model(path)


def test_a_colour_graph_loads_for_a_colour_world_with_per_channel_normalization(tmp_path):
    torch.manual_seed(0)
    mean, std = [0.2, 0.3, 0.4], [0.5, 0.6, 0.7]
    inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)).eval()
    card = {**CARD, "dataset": "colored-mnist", "input": {"layout": "image", "range": [0, 1], "mean": mean, "std": std}}
    path = export(inner, tmp_path / "colour.onnx", "legacy", card=card, example=torch.rand(1, 3, 28, 28))
    model = load_model(path)
    x = torch.rand(5, 3, 28, 28)
    normed = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), inner(normed), atol=1e-4, rtol=0)
    path.with_suffix(".json").write_text(json.dumps({**card, "input": {**card["input"], "mean": [0.1, 0.2]}}))
    with pytest.raises(ModelLoadError, match=r"\"input.mean\" must be a finite number, or one per channel"):
        load_model(path)


def test_an_unsupported_operation_is_refused_by_name(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.zeros((784, 10), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["z"]),
         helper.make_node("Mish", ["z"], ["logits"]), helper.make_node("Hardmax", ["logits"], ["unused"])],
        "mish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], [weights])
    path = tmp_path / "mish.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(CARD))
    with pytest.raises(ModelLoadError, match=r"unsupported operations Mish \(opset 18\), Hardmax \(opset 18\)"):
        load_model(path)


def test_an_onnx_file_without_a_card_or_with_a_wrong_layout_says_what_to_write(trained_lenet, tmp_path):
    path = export(trained_lenet, tmp_path / "lenet.onnx", "legacy", card=None)
    with pytest.raises(ModelLoadError, match=r"has no card lenet\.json.*\"output\": \"logits\""):
        load_model(path)
    path.with_suffix(".json").write_text(json.dumps({**CARD, "input": {"layout": "flat", "range": [0, 1]}}))
    with pytest.raises(ModelLoadError, match=r"the graph's input is \(N, 1, 28, 28\): set \"layout\": \"image\""):
        load_model(path)
    path.with_suffix(".json").write_text(json.dumps({**CARD, "architecture": "lenet5"}))
    with pytest.raises(ModelLoadError, match="remove \"architecture\""):
        load_model(path)


def test_a_damaged_or_huge_onnx_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff\xff")
    bad.with_suffix(".json").write_text(json.dumps(CARD))
    with pytest.raises(ModelLoadError, match="not a valid ONNX file"):
        load_model(bad)
    monkeypatch.setattr(onnx_model, "MAX_ONNX_BYTES", 10)
    with pytest.raises(ModelLoadError, match="more than the 10"):
        load_model(bad)


def test_node_names_never_become_code(default_export, tmp_path):
    """onnx2torch names modules after ONNX nodes and torch.fx writes them into Python source:
    without renaming, this node name runs ``os.mkdir`` when the model is called."""
    marker = tmp_path / "pwned"
    model = onnx.load(str(default_export))
    first = model.graph.node[0].name.lstrip("/").replace(".", "/")
    model.graph.node[1].name = (f'{first}"), getattr(__import__("os"), "mkdir")("{marker}"), '
                                f'getattr(self, "{first}')
    path = tmp_path / "names.onnx"
    path.write_bytes(model.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(CARD))
    loaded = load_model(path)
    loaded(torch.rand(2, 1, 28, 28))
    assert not marker.exists(), "a node name ran as code"


def test_without_the_onnx_extra_the_message_says_how_to_install_it(default_export, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)
    with pytest.raises(ModelLoadError, match=r"needs the onnx extra.*pip install -e \"\.\[onnx\]\""):
        load_model(default_export)
