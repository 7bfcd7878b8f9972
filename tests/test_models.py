"""Loading weights: safetensors only, clear errors for everything else."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from trav_gui.engine.files import sha256_of
from trav_gui.engine.models import loading as models
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import list_models, load_model
from trav_gui.engine.models.weights import save_model

MARKER = "trav_gui_pickle_ran"


class Exploit:
    """Unpickling this calls os.mkdir on a marker path: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_load_roundtrip_eval_mode_and_shapes(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN()
    path = tmp_path / "m.safetensors"
    card = save_model(model, path, {"kind": "test"}, "small_cnn")
    loaded = load_model(path)
    assert not loaded.training
    x = torch.rand(3, 1, 28, 28)
    out = loaded(x)
    assert out.shape == (3, 10) and out.dtype == torch.float32
    torch.testing.assert_close(out, model.eval()(x))
    assert card.sha256 == sha256_of(path)
    assert json.loads(path.with_suffix(".json").read_text())["architecture"] == "small_cnn"


@pytest.mark.parametrize("suffix", [".pt", ".pkl", ".safetensors"])
def test_pickle_is_refused_and_never_unpickled(tmp_path, suffix):
    marker = tmp_path / MARKER
    bad = tmp_path / f"evil{suffix}"
    bad.write_bytes(pickle.dumps(Exploit(str(marker)), protocol=4))
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(bad)
    assert not marker.exists(), "the pickle's code ran"


def test_torch_save_zip_is_refused(tmp_path):
    bad = tmp_path / "zipped.safetensors"
    torch.save(SmallCNN().state_dict(), bad)
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(bad)


def test_wrong_shape_names_the_mismatch(tmp_path):
    state = {k: v.clone() for k, v in SmallCNN().state_dict().items()}
    state["classifier.3.weight"] = torch.zeros(7, 128)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match=r"classifier\.3\.weight has shape \(7, 128\)"):
        load_model(path)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    state = {k: v.clone() for k, v in SmallCNN().state_dict().items()}
    del state["features.0.bias"]
    state["extra"] = torch.zeros(2)
    path = tmp_path / "keys.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match=r"missing tensors \['features.0.bias'\].*unexpected tensors \['extra'\]"):
        load_model(path)


def test_nan_weights_are_refused(tmp_path):
    state = {k: v.clone() for k, v in SmallCNN().state_dict().items()}
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match="NaN"):
        load_model(path)


def test_truncated_and_lying_headers_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in SmallCNN().state_dict().items()}, str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        load_model(cut)
    liar = tmp_path / "liar.safetensors"
    liar.write_bytes((10**12).to_bytes(8, "little") + data[8:])
    with pytest.raises(ModelLoadError, match="header says"):
        load_model(liar)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"abc")
    with pytest.raises(ModelLoadError, match="truncated"):
        load_model(tiny)


def test_card_for_other_weights_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(SmallCNN(), path, {}, "small_cnn")
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = "0" * 64
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="sha256"):
        load_model(path)


def test_unknown_architecture_and_missing_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in SmallCNN().state_dict().items()}, str(path),
              metadata={"architecture": "resnet9000"})
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet9000'"):
        load_model(path)
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "absent.safetensors")


def test_names_resolve_in_the_models_folder(model_folder, monkeypatch):
    monkeypatch.setattr(models, "models_dir", lambda: model_folder)
    assert load_model("a")(torch.rand(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ModelLoadError, match="no model named 'robustt'.*shipped models: a, b"):
        load_model("robustt")


def test_list_models_returns_cards_with_names(model_folder):
    (model_folder / "nocard.safetensors").write_bytes(b"")
    cards = list_models(model_folder)
    assert [c.name for c in cards] == ["a", "b"]
    assert all(c.card.sha256 == sha256_of(c.path) for c in cards)


def test_save_is_atomic_no_temp_files_left(tmp_path):
    save_model(SmallCNN(), tmp_path / "m.safetensors", {}, "small_cnn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_robust_headline_is_the_strongest_attack_at_the_main_radius():
    from trav_gui.engine.models.card import ModelCard, headline_label

    raw = {"evaluation": {"robust": [
        {"eps": 2.0, "attack": "L2 PGD-100, 5 restarts", "samples": 10, "accuracy": 0.7},
        {"eps": 2.0, "attack": "worst case of PGD-100 x5, APGD-CE and APGD-T (DLR)", "samples": 10,
         "accuracy": 0.6},
        {"eps": 3.0, "attack": "L2 PGD-100, 5 restarts", "samples": 10, "accuracy": 0.1},
    ]}}
    head = ModelCard.model_validate(raw).robust_headline()
    assert head.accuracy == 0.6 and head.eps == 2.0 and headline_label(head) == "PGD+APGD"
    raw["evaluation"]["robust"] = raw["evaluation"]["robust"][:1]
    assert headline_label(ModelCard.model_validate(raw).robust_headline()) == "L2 PGD-100"
    assert ModelCard().robust_headline() is None
    assert ModelCard.model_validate({"evaluation": {"robust": []}}).robust_headline() is None
    # entries without both numbers are notes, not figures
    noted = {"evaluation": {"robust": [{"eps": 2.0, "note": "skipped"}]}}
    assert ModelCard.model_validate(noted).robust_headline() is None


@pytest.mark.parametrize("bad_value", [float("inf"), float("-inf")])
def test_inf_weights_are_refused(tmp_path, bad_value):
    state = {k: v.clone() for k, v in SmallCNN().state_dict().items()}
    state["classifier.1.bias"][5] = bad_value
    path = tmp_path / "inf.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelLoadError, match=r"classifier\.1\.bias contains NaN or inf"):
        load_model(path)


def test_integer_tensors_are_refused_and_half_precision_is_widened(tmp_path):
    state = {k: v.clone() for k, v in SmallCNN().state_dict().items()}
    ints = dict(state, **{"features.0.bias": torch.zeros(32, dtype=torch.int32)})
    save_file(ints, str(tmp_path / "int.safetensors"))
    with pytest.raises(ModelLoadError, match=r"features\.0\.bias has dtype torch\.int32"):
        load_model(tmp_path / "int.safetensors")
    save_file({k: v.half() for k, v in state.items()}, str(tmp_path / "half.safetensors"))
    assert load_model(tmp_path / "half.safetensors")(torch.rand(1, 1, 28, 28)).dtype == torch.float32


def test_a_header_pointing_past_the_end_of_the_file_is_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"features.0.bias": torch.zeros(32)}, str(good))
    data = good.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + n])
    header["features.0.bias"]["data_offsets"] = [0, 10**9]  # lies about where the data is
    header["features.0.bias"]["shape"] = [250_000_000]
    body = json.dumps(header).encode()
    bad = tmp_path / "liar.safetensors"
    bad.write_bytes(len(body).to_bytes(8, "little") + body + data[8 + n:])
    with pytest.raises(ModelLoadError, match="not a valid safetensors"):
        load_model(bad)
