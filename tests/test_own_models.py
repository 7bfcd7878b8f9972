"""Users' own .safetensors models: the architectures, cards and their refusals, the user models folder."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from trav_gui.cli import main
from trav_gui.engine.models.architectures import MLP, LeNet5, MadryCNN, SmallCNN, fitting_architectures
from trav_gui.engine.models.errors import ModelLoadError, UserModelError
from trav_gui.engine.models.loading import load_model, resolve_model_path
from trav_gui.engine.models.user_models import add_user_model, list_user_models, remove_user_model
from trav_gui.paths import user_models_dir

from helpers import mnist_images, save_with_card

MNIST_NAMES = [str(k) for k in range(10)]
LENET_CARD = {"architecture": "lenet5", "dataset": "mnist", "class_names": MNIST_NAMES,
              "input": {"layout": "image", "range": [0, 1]}, "output": "logits"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_lenet_with_its_card_loads_as_trained(trained_lenet, tmp_path):
    model = load_model(save_with_card(trained_lenet, tmp_path / "lenet.safetensors", LENET_CARD))
    x, labels = mnist_images(64)
    torch.testing.assert_close(model(x), trained_lenet(x))
    assert (model(x).argmax(1).numpy() == labels).mean() > 0.8


def test_normalized_flat_models_are_wrapped_into_the_apps_convention(tmp_path):
    torch.manual_seed(0)
    mlp = MLP().eval()
    card = {"architecture": "mlp", "dataset": "fashion-mnist", "output": "logits",
            "input": {"layout": "flat", "range": [0, 255], "mean": [33.3], "std": [76.0]}}
    model = load_model(save_with_card(mlp, tmp_path / "mlp.safetensors", card))
    x = torch.rand(5, 1, 28, 28)
    # what the user's own code computes: 0..255 pixels, normalized, flat
    torch.testing.assert_close(model(x), mlp(((x * 255 - 33.3) / 76.0).flatten(1)))


def test_a_file_without_a_card_is_told_what_to_write(trained_lenet, tmp_path):
    path = save_with_card(trained_lenet, tmp_path / "lenet.safetensors")
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    message = str(err.value)
    assert "has no card lenet.json" in message and "its tensors fit architecture 'lenet5'" in message
    assert '"architecture": "lenet5"' in message and '"dataset": "mnist"' in message and '"output": "logits"' in message


@pytest.mark.parametrize("change, words", [
    (lambda c: c.pop("output"), r'incomplete: add "output"'),
    (lambda c: c.pop("dataset"), r'incomplete: add "dataset"'),
    (lambda c: c.update(dataset="cifar10"), r'"dataset" must be one of mnist, fashion-mnist'),
    (lambda c: c.update(class_names=["zero"] * 10), r'"class_names" .* are not the mnist classes'),
    (lambda c: c.update(output="softmax"), r'"output" must be one of logits, log_probabilities, probabilities'),
    (lambda c: c["input"].update(layout="grid"), r'"input.layout" must be "image"'),
    (lambda c: c["input"].update(range=[0, 2]), r'"input.range" must be \[0, 1\] or \[0, 255\]'),
    (lambda c: c["input"].update(mean=0.1), r'needs both "mean" and "std"'),
    (lambda c: c["input"].update(mean=0.1, std=0), r'"input.std" must be > 0'),
    (lambda c: c["input"].update(mean="x", std=1), r'"input.mean" must be a finite number'),
    (lambda c: c["input"].update(scale=2), r'"input" has unknown entries \[\'scale\'\]'),
    (lambda c: c["input"].update(layout="flat"),
     r"architecture 'lenet5' takes image input .* set \"layout\": \"image\""),
    (lambda c: c.update(output="probabilities"), r"'lenet5' returns logits .* set \"output\": \"logits\""),
    (lambda c: c.update(architecture="resnet"), r"unknown architecture 'resnet'"),
    (lambda c: c.update(architecture=["lenet5"]), r"unknown architecture \['lenet5'\]"),
    (lambda c: c.update(dataset=["mnist"]), r'"dataset" must be one of'),
    (lambda c: c.update(output={"a": 1}), r'"output" must be one of'),
    (lambda c: c.update(input="image"), r'"input" must be an object'),
    (lambda c: c["input"].update(layout=["image"]), r'"input.layout" must be "image"'),
    (lambda c: c.update(architecture="mlp"), r"'mlp' takes flat input .* set \"layout\": \"flat\""),
    (lambda c: c.update(architecture="wide_cnn"),
     r"does not fit architecture 'wide_cnn'.*its tensors fit architecture 'lenet5'"),
])
def test_a_bad_card_says_what_is_wrong(trained_lenet, tmp_path, change, words):
    card = json.loads(json.dumps(LENET_CARD))
    change(card)
    with pytest.raises(ModelLoadError, match=words):
        load_model(save_with_card(trained_lenet, tmp_path / "lenet.safetensors", card))


def test_the_published_madry_network_is_told_from_small_cnn_by_its_hidden_layer(tmp_path):
    torch.manual_seed(0)
    madry, small = MadryCNN().eval(), SmallCNN().eval()
    assert madry.state_dict().keys() == small.state_dict().keys()  # same names: only shapes tell them apart
    assert fitting_architectures(madry.state_dict()) == ["madry_cnn"]
    assert fitting_architectures(small.state_dict()) == ["small_cnn"]
    assert sum(p.numel() for p in madry.parameters()) == 3_274_634  # Madry et al.'s 3.3M
    card = {**LENET_CARD, "architecture": "madry_cnn"}
    model = load_model(save_with_card(madry, tmp_path / "madry.safetensors", card))
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x), madry(x))
    with pytest.raises(ModelLoadError, match="its tensors fit architecture 'madry_cnn'"):
        load_model(save_with_card(madry, tmp_path / "nocard.safetensors"))


def test_an_unreadable_card_is_refused(trained_lenet, tmp_path):
    path = save_with_card(trained_lenet, tmp_path / "lenet.safetensors")
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="the model card cannot be read"):
        load_model(path)
    path.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="not an object"):
        load_model(path)


@pytest.mark.parametrize("kind", ["state_dict.pt", "model.pth", "jit.pt", "raw.pkl", "renamed.safetensors"])
def test_pickles_and_torchscript_are_refused_with_the_two_line_conversion(tmp_path, kind):
    path = tmp_path / kind
    if kind.startswith("jit"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; its files still exist
            torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    elif kind.startswith("raw"):
        path.write_bytes(pickle.dumps({"w": 1}))
    else:
        torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    message = str(err.value)
    assert "pickle" in message and "was not opened" in message
    assert "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')" in message
    assert "torch.onnx.export(model, torch.rand(1, 1, 28, 28), 'model.onnx')" in message


# ----------------------------------------------------------------------------- the user models folder


def test_add_list_use_and_remove_round_trip(trained_lenet, tmp_path, user_models):
    card = {**LENET_CARD, "kind": "mine", "role": "judge"}
    source = save_with_card(trained_lenet, tmp_path / "my lenet.safetensors", card)
    entry, model = add_user_model(source)
    assert entry.name == "my-lenet" and entry.source == "user" and user_models_dir() == user_models
    assert sorted(p.name for p in user_models.iterdir()) == ["my-lenet.json", "my-lenet.safetensors"]
    stored = json.loads((user_models / "my-lenet.json").read_text())
    assert stored["evaluation"]["clean_accuracy"] > 0.8 and stored["evaluation"]["clean_samples"] == 10_000
    assert stored["architecture"] == "lenet5" and stored["kind"] == "mine" and "role" not in stored
    assert stored == entry.card.to_json()  # the entry's card is the one written
    assert stored["input"] == {"layout": "image", "range": [0, 1]} and stored["output"] == "logits"
    assert [c.name for c in list_user_models()] == ["my-lenet"]
    assert resolve_model_path("my-lenet") == user_models / "my-lenet.safetensors"
    x, _ = mnist_images(4)
    torch.testing.assert_close(load_model("my-lenet")(x), trained_lenet(x))
    torch.testing.assert_close(model(x), trained_lenet(x))
    assert [p.name for p in remove_user_model("my-lenet")] == ["my-lenet.safetensors", "my-lenet.json"]
    assert list_user_models() == [] and not any(user_models.iterdir())
    with pytest.raises(UserModelError, match="no user model named 'my-lenet'"):
        remove_user_model("my-lenet")


def test_names_are_checked_and_never_overwrite(trained_lenet, tmp_path):
    source = save_with_card(trained_lenet, tmp_path / "lenet.safetensors", LENET_CARD)
    for bad in ("../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(UserModelError, match="is not allowed"):
            add_user_model(source, name=bad)
    with pytest.raises(UserModelError, match="taken by a shipped model"):
        add_user_model(source, name="robust")
    with pytest.raises(UserModelError, match="'robust' is a shipped model"):
        remove_user_model("robust")
    add_user_model(source, name="mine")
    other = save_with_card(LeNet5(), tmp_path / "other.safetensors", LENET_CARD)
    with pytest.raises(UserModelError, match="taken by another user model"):
        add_user_model(other, name="mine")
    card, _ = add_user_model(other, name="mine", rename=True)
    assert card.name == "mine-2"


def test_a_refused_file_leaves_the_user_folder_empty(tmp_path, user_models):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ModelLoadError, match="pickle"):
        add_user_model(bad)
    assert not user_models.exists() or not any(user_models.iterdir())


def test_the_cli_adds_lists_apart_traverses_and_removes(trained_lenet, tmp_path, capsys, user_models):
    source = save_with_card(trained_lenet, tmp_path / "lenet.safetensors", LENET_CARD)
    assert main(["models", "add", str(source), "--name", "le"]) == 0
    out = capsys.readouterr().out
    assert "le: clean accuracy" in out and "mnist test images" in out and str(user_models) in out
    assert main(["models"]) == 0
    shipped, user = capsys.readouterr().out.split("user models (")
    assert "robust" in shipped and "le " not in shipped and "\nle " in user
    assert main(["models", "--json"]) == 0
    sources = {c["name"]: c["source"] for c in json.loads(capsys.readouterr().out)}
    assert sources["le"] == "user" and sources["robust"] == "shipped"
    assert main(["models", "--dataset", "fashion-mnist"]) == 0
    assert "\nle " not in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["traverse", "--model", "le", "--model", str(source), "--index", "0", "--target", "3",
                 "--steps", "2", "--out", str(run)]) == 0
    assert np.load(run / "le.npz")["frames"].shape == (3, 28, 28)
    assert np.load(run / "lenet.npz")["probs"].shape == (3, 10)  # a path: named after its file
    assert main(["models", "remove", "le"]) == 0
    assert main(["models", "remove", "le"]) == 2
    assert "no user model named 'le'" in capsys.readouterr().err


def test_the_cli_refuses_with_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "lenet.safetensors"
    save_with_card(LeNet5(), bad, {**LENET_CARD, "output": "scores"})
    assert main(["models", "add", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lenet.safetensors: its card lenet.json is inconsistent") and err.count("\n") == 1
    pt = tmp_path / "model.pt"
    torch.save({}, pt)
    assert main(["traverse", "--model", str(pt), "--index", "0", "--target", "1", "--out", str(tmp_path / "o")]) == 2
    assert "torch.onnx.export" in capsys.readouterr().err


def test_an_untrained_model_is_added_with_a_warning(tmp_path, capsys):
    torch.manual_seed(3)
    source = save_with_card(LeNet5(), tmp_path / "fresh.safetensors", LENET_CARD)
    assert main(["models", "add", str(source)]) == 0
    assert "warning: its clean accuracy is only" in capsys.readouterr().err
