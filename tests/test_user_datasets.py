"""A user's own image folders as data sets: import, the registry, the refusals, training on one, and
PreActResNet-18 with RobustBench's parameter names."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from training import build_realism_reference, evaluate, train
from trav_gui.cli import main
from trav_gui.engine.data import datasets as data
from trav_gui.engine.data import folders
from trav_gui.engine.data.folders import DatasetFolderError, import_folder, remove_user_dataset
from trav_gui.engine.models.architectures import build
from trav_gui.engine.models.errors import ModelLoadError
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.models.user_models import add_user_model
from trav_gui.engine.models.weights import save_model
from trav_gui.engine.realism import RealismScorer, judge_name, reference_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PETS = ("cat", "dog", "frog")


def make_tree(root, classes=PETS, size=32, mode="RGB", train=4, test=2, seed=0):
    """``root/{train,test}/<class>/<i>.png``: random pictures, each class a little brighter than the last."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    for split, n in (("train", train), ("test", test)):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 128, (size, size, channels), dtype=np.uint8) + 10 * k
                Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(folder / f"{i}.png")
    return root


def left_behind(folder):
    """What a refused import left in the user data sets folder (nothing, or an empty folder)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- add, use, remove


def test_an_rgb_folder_is_added_listed_read_and_removed(tmp_path, user_datasets):
    tree = make_tree(tmp_path / "pets")
    done = []
    ds = import_folder(tree, "pets", "Pets", progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (18, 18)
    assert (ds.name, ds.title, ds.shape, ds.class_names, ds.counts) == ("pets", "Pets", (3, 32, 32), PETS, (12, 6))
    assert data.get_dataset("pets") == ds and "pets" in data.all_datasets() and "pets" not in data.DATASETS
    assert sorted(p.name for p in (user_datasets / "pets").iterdir()) == ["dataset.json", "test.npz", "train.npz"]
    card = json.loads((user_datasets / "pets" / "dataset.json").read_text())
    assert card["counts"] == {"train": dict.fromkeys(PETS, 4), "test": dict.fromkeys(PETS, 2)}
    assert card["source"] == str(tree.resolve()) and card["shape"] == [3, 32, 32] and card["created"]

    images, labels = data.test_set("pets")
    assert images.shape == (6, 3, 32, 32) and images.dtype == np.uint8 and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert np.array_equal(images[3], np.asarray(Image.open(tree / "test" / "dog" / "1.png")).transpose(2, 0, 1))
    x, y = data.test_images("pets", 4)
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    x, y, digest = data.load_training_set("pets", True)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and digest == card["sha256"]["train"]
    assert np.array_equal(np.rint(x[0].numpy() * 255), np.asarray(Image.open(tree / "train" / "cat" / "0.png")
                                                                  ).transpose(2, 0, 1))

    assert remove_user_dataset("pets") == user_datasets / "pets"
    assert left_behind(user_datasets) == [] and "pets" not in data.all_datasets()
    assert tree.is_dir()  # the source is not touched
    with pytest.raises(ValueError, match="unknown data set 'pets'"):
        data.get_dataset("pets")


def test_a_grey_folder_stays_grey_and_a_mixed_one_is_rgb(tmp_path):
    grey = import_folder(make_tree(tmp_path / "g", ("a", "b"), size=28, mode="L"), "greys")
    assert grey.shape == (1, 28, 28) and data.test_set("greys")[0].shape == (4, 28, 28)
    assert data.load_training_set("greys", False)[0].shape == (4, 1, 28, 28)
    mixed = make_tree(tmp_path / "m", ("a", "b"), size=28, mode="L")
    Image.new("RGB", (28, 28), (200, 10, 10)).save(mixed / "test" / "b" / "red.png")
    ds = import_folder(mixed, "mixed")
    images, _ = data.test_set("mixed")
    assert ds.shape == (3, 28, 28) and images.shape == (5, 3, 28, 28)
    assert (images[0, 0] == images[0, 1]).all()  # a grey image: the same in every channel
    assert images[-1, :, 0, 0].tolist() == [200, 10, 10]


def test_a_set_removed_and_added_again_under_its_name_is_read_anew(tmp_path):
    import_folder(make_tree(tmp_path / "a"), "pets")
    assert data.test_set("pets")[0].shape == (6, 3, 32, 32)
    remove_user_dataset("pets")
    import_folder(make_tree(tmp_path / "b", ("x", "y"), size=28, mode="L", test=3), "pets")
    assert data.get_dataset("pets").class_names == ("x", "y") and data.test_set("pets")[0].shape == (6, 28, 28)


def test_links_inside_the_tree_are_followed(tmp_path):
    tree = make_tree(tmp_path / "t", ("a", "b"))
    os.symlink(tree / "train" / "a" / "0.png", tree / "train" / "b" / "linked.png")
    assert import_folder(tree, "linked").counts == (9, 4)


def test_the_cli_adds_lists_and_removes_with_one_line_errors(tmp_path, capsys, user_datasets):
    tree = make_tree(tmp_path / "pets")
    assert main(["datasets"]) == 0
    assert "no user data sets yet" in capsys.readouterr().out
    assert main(["datasets", "add", str(tree), "--name", "pets", "--title", "My pets"]) == 0
    out = capsys.readouterr().out
    assert "pets: 3 classes (cat, dog, frog), 3x32x32 images, 12 for training and 6 for testing" in out
    assert main(["datasets"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pets "))
    assert all(w in row for w in ("My pets", "3x32x32", "3: cat, dog, frog", "12/6", str(tree.resolve())))
    assert main(["datasets", "add", str(tree), "--name", "pets"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a user data set 'pets' exists already") and err.count("\n") == 1
    assert main(["datasets", "remove", "mnist"]) == 2
    assert "shipped data set" in capsys.readouterr().err
    assert main(["datasets", "remove", "pets"]) == 0 and left_behind(user_datasets) == []
    assert main(["datasets", "remove", "pets"]) == 2
    assert "no user data set 'pets'" in capsys.readouterr().err


def test_a_data_set_in_use_by_a_user_model_is_not_removed(tmp_path, capsys):
    import_folder(make_tree(tmp_path / "pets"), "pets")
    path = tmp_path / "m.safetensors"
    save_model(build("small_cnn", (3, 32, 32), 3), path, {"kind": "test", "dataset": "pets"}, "small_cnn")
    entry, _ = add_user_model(path, name="pet-model")
    assert entry.dataset == "pets" and entry.card.evaluation.clean_samples == 6
    assert main(["datasets", "remove", "pets"]) == 2
    assert "pet-model were trained on pets" in capsys.readouterr().err
    assert "pets" in data.all_datasets()


def test_a_user_folder_end_to_end_add_train_traverse_export_replay(tmp_path, capsys):
    """The acceptance path: a 3-class RGB 32x32 folder added, a model trained on it for a few hundred
    steps, traversed with the command line, exported, and the run replayed identically."""
    from trav_gui.engine.core.traversal import stack_frames, traverse
    from trav_gui.engine.runs.record import read_run_record

    tree = make_tree(tmp_path / "pets", train=40, test=4)
    assert main(["datasets", "add", str(tree), "--name", "pets", "--title", "Pets"]) == 0
    out = tmp_path / "pets.safetensors"
    train.main(["--dataset", "pets", "--kind", "standard", "--epochs", "20", "--batch-size", "8", "--no-eval",
                "--curve-samples", "12", "--out", str(out)])  # 15 batches x 20 epochs = 300 steps
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input_shape"] == [3, 32, 32] and card["learning_curve"][-1]["train_acc"] > 0.5
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["traverse", "--index", "0", "--target", "2", "--model", str(out), "--steps", "30",
                 "--step-size", "0.5", "--out", str(run)]) == 0
    assert "predicts" in capsys.readouterr().out
    with np.load(run / "pets.npz") as f:
        frames, probs = f["frames"], f["probs"]
    images, _ = data.test_set("pets")
    assert frames.shape == (31, 3, 32, 32) and probs.shape == (31, 3)
    np.testing.assert_array_equal(frames[0], images[0] / np.float32(255))
    assert probs[-1, 2] > probs[0, 2]
    png = np.asarray(Image.open(run / "frames" / "pets" / "step_00030.png"))
    assert png.shape == (32, 32, 3)
    header = (run / "steps.csv").read_text().splitlines()[0].split(",")
    assert "p2" in header and "p3" not in header
    record = read_run_record(run)
    assert record.start_image.shape == (3, 32, 32) and record.raw["extra"]["dataset"] == "pets"
    again = stack_frames(list(traverse([load_model(out)], record.start_image, record.target, record.config,
                                       shape=data.get_dataset("pets").shape)))
    np.testing.assert_array_equal(again["images"][:, 0, 0], frames)
    # The gallery is 3x3 (6 traversals); a target beyond the set's classes is one line.
    assert main(["gallery", "--model", str(out), "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    assert "/6 traversals reached their target" in capsys.readouterr().out
    assert (tmp_path / "g" / "gallery_pets.png").is_file()
    assert main(["traverse", "--index", "0", "--target", "3", "--model", str(out), "--out", str(tmp_path / "o")]) == 2
    assert "--target must be 0..2 for Pets" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("k", [2, 20])
def test_the_app_lays_out_two_and_twenty_classes(tmp_path, qtbot, k):
    from helpers import make_window
    from trav_gui.qt.target_picker import MAX_BUTTONS

    classes = tuple(f"class-{i:02d}" for i in range(k))
    import_folder(make_tree(tmp_path / "tree", classes=classes, size=28, train=1, test=1), "world", "World")
    folder = tmp_path / "models"
    for i, name in enumerate(["m1", "m2"]):
        torch.manual_seed(i)
        save_model(build("small_cnn", (3, 28, 28), k), folder / f"{name}.safetensors",
                   {"kind": "test", "dataset": "world"}, "small_cnn")
    w = make_window(qtbot, folder)
    assert w.set_dataset("world")
    picker = w.target_picker
    assert picker.uses_list == (k > MAX_BUTTONS)
    if k == 2:
        assert [b.text() for b in picker.buttons] == ["class-00", "class-01"] and not picker.search.isVisibleTo(picker)
    else:
        assert picker.buttons == [] and picker.search.count() == 20 and picker.search.isVisibleTo(picker)
        with qtbot.waitSignal(picker.target_changed, timeout=1000):
            picker.search.setCurrentIndex(17)
        assert picker.target == 17
    w.selector.set_selected([entry.key for entry in w.selector.entries()])
    target = k - 1
    w.set_target(target)
    assert picker.target == target
    w.settings.max_steps.setValue(3)
    with qtbot.waitSignal(w.run_finished, timeout=30_000):
        w.play()
    assert w.history.probs.shape == (4, 2, k)
    column = w.view.columns[0]
    assert f"P(class-{target:02d})" in column.prediction.text
    assert ("top:" in column.prediction.text) == (k > 10)  # beyond ten classes the top few are named
    # The gallery: all classes when they fit, else a chosen 12 (the class field is shown).
    tab = w.gallery_tab
    assert tab.classes.isVisibleTo(tab) == (k > 12)
    assert tab.chosen_classes() == list(range(min(k, 12)))
    if k > 12:
        tab.classes.setText("0 5 19")
        assert tab.chosen_classes() == [0, 5, 19]
        tab.classes.setText("0 5 25")
        with pytest.raises(ValueError, match="distinct classes of 0..19"):
            tab.chosen_classes()


# ----------------------------------------------------------------------------- refusals


def _rm(path):
    shutil.rmtree(path)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:120])


REFUSALS = [
    ("missing test", lambda t: _rm(t / "test"), "test: no such folder"),
    ("other classes", lambda t: (t / "test" / "frog").rename(t / "test" / "bird"),
     "frog only in train/ and bird only in test/"),
    ("one class", lambda t: [_rm(t / s / c) for s in ("train", "test") for c in ("dog", "frog")],
     "1 class folder(s) (cat); a data set needs at least 2 classes"),
    ("empty class", lambda t: [p.unlink() for p in (t / "train" / "dog").iterdir()], "no images in this class folder"),
    ("not an image", lambda t: (t / "train" / "cat" / "notes.txt").write_text("hello"),
     "notes.txt: not a readable image"),
    ("mixed sizes", lambda t: Image.new("RGB", (28, 28)).save(t / "test" / "dog" / "small.png"),
     "images of different sizes: "),
    ("not square", lambda t: Image.new("RGB", (32, 30)).save(t / "test" / "dog" / "wide.png"),
     "wide.png: 32x30 pixels; images must be square"),
    ("too big", lambda t: Image.new("RGB", (80, 80)).save(t / "train" / "cat" / "big.png"),
     "big.png: 80x80 pixels; images must be square, 28x28 to 64x64: resize them first"),
    ("too small", lambda t: Image.new("L", (16, 16)).save(t / "train" / "cat" / "tiny.png"), "16x16 pixels"),
    ("16-bit", lambda t: Image.new("I;16", (32, 32)).save(t / "train" / "cat" / "deep.png"),
     "deep.png: Pillow mode I"),
    ("file link out", lambda t: os.symlink(t.parent / "outside.png", t / "train" / "cat" / "out.png"),
     "out.png: a symbolic link out of"),
    ("folder link out", lambda t: os.symlink(t.parent / "elsewhere", t / "train" / "cat" / "more"),
     "more: a symbolic link out of"),
    # a header that reads, pixels that do not: refused while decoding, after the scan
    ("truncated", lambda t: _truncate(t / "test" / "frog" / "1.png"),
     "1.png: not a readable image (image file is truncated)"),
]


@pytest.mark.parametrize("damage, message", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_bad_tree_is_one_clear_line_and_nothing_is_written(tmp_path, user_datasets, damage, message):
    Image.new("RGB", (32, 32)).save(tmp_path / "outside.png")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "elsewhere" / "x.png")
    tree = make_tree(tmp_path / "pets")
    damage(tree)
    with pytest.raises(DatasetFolderError, match=re.escape(message)) as info:
        import_folder(tree, "pets")
    assert "\n" not in str(info.value)
    assert left_behind(user_datasets) == [] and "pets" not in data.all_datasets()


def test_too_many_images_are_refused_before_any_is_read(tmp_path, user_datasets, monkeypatch):
    monkeypatch.setattr(folders, "MAX_IMAGES", 10)
    tree = make_tree(tmp_path / "pets")
    monkeypatch.setattr(folders, "_header", lambda path: pytest.fail("a header was read"))
    with pytest.raises(DatasetFolderError, match="more than 10 images; use a subset"):
        import_folder(tree, "pets")
    assert left_behind(user_datasets) == []


@pytest.mark.parametrize("name, message", [
    ("Pets", "not allowed"), ("../pets", "not allowed"), ("", "not allowed"),
    ("mnist", "'mnist' is a shipped data set"),
])
def test_bad_names_are_refused(tmp_path, user_datasets, name, message):
    with pytest.raises(DatasetFolderError, match=message):
        import_folder(make_tree(tmp_path / "pets"), name)
    assert left_behind(user_datasets) == []


def test_an_interrupted_import_leaves_nothing(tmp_path, user_datasets, monkeypatch):
    tree = make_tree(tmp_path / "pets")

    def interrupt(done, total):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_folder(tree, "pets", progress=interrupt)
    assert left_behind(user_datasets) == []


def test_a_damaged_user_set_is_named_with_the_way_to_fix_it(tmp_path, user_datasets):
    import_folder(make_tree(tmp_path / "pets"), "pets")
    npz = user_datasets / "pets" / "test.npz"
    with np.load(npz) as f:
        images, labels = f["images"].copy(), f["labels"]
    images[0, 0, 0, 0] ^= 1
    np.savez_compressed(npz, images=images, labels=labels)
    data.forget_cached()
    with pytest.raises(data.DigitsUnavailableError, match="changed since it was added.*datasets remove pets"):
        data.test_set("pets")
    (user_datasets / "pets" / "dataset.json").write_text("{")
    data.forget_cached()
    with pytest.raises(ValueError, match="user data set 'pets' cannot be read: .*dataset.json"):
        data.get_dataset("pets")


# ----------------------------------------------------------------------------- the usual tools take --dataset


def test_training_and_the_realism_reference_take_a_user_set(tmp_path, user_datasets):
    import_folder(make_tree(tmp_path / "pets"), "pets", "Pets")
    out = tmp_path / "x.safetensors"
    train.main(["--dataset", "pets", "--kind", "standard", "--epochs", "1", "--limit", "64", "--no-eval",
                "--batch-size", "8", "--curve-samples", "6", "--out", str(out)])
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["dataset"] == "pets" and card["training"]["data_sha256"] == data.get_dataset("pets").sha256[0]
    assert load_model(out)(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    # 3 classes: APGD-CE only (targeted APGD-DLR needs 4)
    figures = evaluate.main([str(out), "--attack-steps", "2", "--restarts", "1", "--curve-eps"])
    assert figures["test_samples"] == 6 and figures["robust"][-1]["attack"].endswith("APGD-CE, 2 steps")
    build_realism_reference.main(["--dataset", "pets", "--per-class", "2"])
    assert (user_datasets / "pets" / "realism.npz").is_file()
    assert reference_set("pets").images.shape == (6, 3 * 32 * 32)
    # Without a judge realism says how to get one; --judge trains it into the set's folder.
    with pytest.raises(ValueError, match="Pets has no judge.*--dataset pets --kind robust --arch wide_cnn --judge"):
        judge_name("pets")
    train.main(["--dataset", "pets", "--kind", "standard", "--arch", "wide_cnn", "--seed", "1", "--judge", "--epochs",
                "1", "--limit", "64", "--no-eval", "--batch-size", "8", "--curve-samples", "6"])
    judge = user_datasets / "pets" / "judge.safetensors"
    assert judge_name("pets") == str(judge) and json.loads(judge.with_suffix(".json").read_text())["role"] == "judge"
    realism = RealismScorer(dataset="pets").score(data.test_set("pets")[0][:2] / np.float32(255), 1)
    assert realism.judge_probs.shape == (2, 3) and realism.nn_ratio.shape == (2,)


def test_a_model_of_another_shape_is_refused_by_its_tensors(tmp_path):
    import_folder(make_tree(tmp_path / "pets"), "pets")
    path = tmp_path / "mnist-sized.safetensors"
    save_model(build("small_cnn"), path, {"kind": "test"}, "small_cnn")
    card = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**card, "dataset": "pets"}))
    with pytest.raises(ModelLoadError, match=r"features.0.weight has shape \(32, 1, 5, 5\), small_cnn needs "
                                             r"\(32, 3, 5, 5\)"):
        load_model(path)


# ----------------------------------------------------------------------------- PreActResNet-18


def robustbench_preact_resnet18_shapes(num_classes=10):
    """The tensors of RobustBench's PreActResNet18() (robustbench/model_zoo/architectures/resnet.py),
    written out from its source: a conv1, four layers of two PreActBlocks (bn1, conv1, bn2, conv2, a
    1x1 shortcut conv where the stride or width changes), a linear layer; no final batch norm."""
    shapes = {"conv1.weight": (64, 3, 3, 3), "linear.weight": (num_classes, 512), "linear.bias": (num_classes,)}
    planes_in = 64
    for layer, planes in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{layer}.{block}."
            width_in = planes_in if block == 0 else planes
            for bn, width in (("bn1", width_in), ("bn2", planes)):
                shapes.update({f"{p}{bn}.{k}": (width,) for k in ("weight", "bias", "running_mean", "running_var")})
                shapes[f"{p}{bn}.num_batches_tracked"] = ()
            shapes[f"{p}conv1.weight"] = (planes, width_in, 3, 3)
            shapes[f"{p}conv2.weight"] = (planes, planes, 3, 3)
            if block == 0 and layer > 1:
                shapes[f"{p}shortcut.0.weight"] = (planes, width_in, 1, 1)
        planes_in = planes
    return shapes


def test_preact_resnet18_has_robustbenchs_parameter_names_and_shapes():
    model = build("preact_resnet18", (3, 32, 32), 10)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == robustbench_preact_resnet18_shapes()
    assert sum(p.numel() for p in model.parameters()) == 11_171_146  # PreActResNet-18's published size
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert build("preact_resnet18", (1, 28, 28), 3)(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    assert build("preact_resnet18", (3, 64, 64), 5).eval()(torch.rand(1, 3, 64, 64)).shape == (1, 5)


def test_a_robustbench_state_dict_loads_from_safetensors_as_is(tmp_path):
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    import_folder(make_tree(tmp_path / "cifar", classes, train=1, test=1), "cifar10")
    g = torch.Generator().manual_seed(0)
    # as RobustBench's model saves it: float tensors, and int64 batch counts
    state = {k: (torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
                 else torch.rand(s, generator=g) + 0.5 if k.endswith("running_var")
                 else torch.randn(s, generator=g) * 0.05)
             for k, s in robustbench_preact_resnet18_shapes().items()}
    path = tmp_path / "wong2020.safetensors"
    save_file(state, str(path))
    card = {"architecture": "preact_resnet18", "dataset": "cifar10", "output": "logits",
            "input": {"layout": "image", "range": [0, 1], "mean": [0.4914, 0.4822, 0.4465],
                      "std": [0.2471, 0.2435, 0.2616]}}
    path.with_suffix(".json").write_text(json.dumps(card))
    model = load_model(path)
    x = torch.rand(2, 3, 32, 32)
    inner = build("preact_resnet18", (3, 32, 32), 10)
    inner.load_state_dict(state)
    mean, std = (torch.tensor(card["input"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    assert model(x).shape == (2, 10)
    assert torch.allclose(model(x), inner.eval()((x - mean) / std), atol=1e-5)
    path.with_suffix(".json").write_text(json.dumps({**card, "input": {**card["input"], "mean": [0.5, 0.5]}}))
    with pytest.raises(ModelLoadError, match='"input.mean" must be a finite number'):
        load_model(path)


def test_a_per_channel_normalization_must_have_one_value_per_channel(tmp_path):
    path = tmp_path / "grey.safetensors"
    save_model(build("small_cnn"), path, {"kind": "test"}, "small_cnn")
    path.with_suffix(".json").write_text(json.dumps(
        {"architecture": "small_cnn", "dataset": "mnist", "output": "logits",
         "input": {"layout": "image", "range": [0, 1], "mean": [0.1, 0.1, 0.1], "std": [0.3, 0.3, 0.3]}}))
    with pytest.raises(ModelLoadError, match=r'"input.mean" has 3 values, but mnist images have 1 channel\(s\)'):
        load_model(path)
