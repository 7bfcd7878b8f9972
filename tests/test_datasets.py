"""Data sets as a dimension: the registry, shipped test sets, refusing mixed runs, the CLI flag and the app."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trav_gui.cli import main
from trav_gui.engine.core.traversal import TraversalConfig
from trav_gui.engine.data import datasets as data
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.card import ModelCard, ModelEntry, check_one_dataset
from trav_gui.engine.models.loading import load_model
from trav_gui.engine.models.weights import save_model
from trav_gui.engine.output.gallery import gallery_start_indices, run_gallery
from trav_gui.engine.runs.record import write_run_record

from helpers import make_window


@pytest.fixture
def mixed_folder(tmp_path):
    """Two MNIST models (robust, standard) and two Fashion-MNIST ones, untrained, with cards."""
    folder = tmp_path / "models"
    for i, (name, dataset) in enumerate([("robust", "mnist"), ("standard", "mnist"),
                                         ("fashion-robust", "fashion-mnist"),
                                         ("fashion-standard", "fashion-mnist")]):
        torch.manual_seed(i)
        save_model(SmallCNN(), folder / f"{name}.safetensors", {"kind": "test", "dataset": dataset}, "small_cnn")
    return folder


def test_registry_names_three_sets_with_ten_classes_and_their_shipped_test_sets():
    assert set(data.DATASETS) == {"mnist", "fashion-mnist", "colored-mnist"}
    fashion = data.get_dataset("fashion-mnist")
    assert fashion.class_names[7] == "Sneaker" and fashion.class_names[9] == "Ankle boot"
    assert data.get_dataset(None).name == "mnist" and data.get_dataset("MNIST").label(3) == "3"
    assert [data.get_dataset(n).shape for n in ("mnist", "fashion-mnist", "colored-mnist")] == [
        (1, 28, 28), (1, 28, 28), (3, 28, 28)]
    for name in data.DATASETS:
        images, labels = data.test_set(name)
        # Grey sets store (N, H, W) as they always did; colour sets (N, 3, H, W).
        assert images.shape == (10_000, *data.stored_shape(data.get_dataset(name))) and images.dtype == np.uint8
        x, y = data.test_images(name, 7)
        assert x.shape == (7, *data.get_dataset(name).shape) and x.dtype == torch.float32 and y.tolist() == labels[:7].tolist()
        assert np.bincount(labels, minlength=10).min() > 800  # every class is there
    # The two shipped test sets are different pictures.
    assert not np.array_equal(data.test_set("mnist")[0][:10], data.test_set("fashion-mnist")[0][:10])
    with pytest.raises(ValueError, match="unknown data set 'cifar'.*fashion-mnist"):
        data.get_dataset("cifar")


def test_colored_mnist_is_mnist_coloured_by_the_documented_recipe(tmp_path):
    from trav_gui.engine.data import colored

    grey, grey_labels = data.test_set("mnist")
    rgb, labels = data.test_set("colored-mnist")
    # The shipped test set is MNIST's test digits, coloured with the test seed's hues.
    assert np.array_equal(labels, grey_labels)
    assert np.array_equal(rgb[:200], colored.colorize(np.asarray(grey[:200]), colored.hues(10_000, colored.TEST_SEED)[:200]))
    try:
        x, y, digest = data.load_training_set("colored-mnist", True)
        grey_x, grey_y, grey_digest = data.load_training_set("mnist", True)
    except data.DatasetUnavailableError:
        pytest.skip("MNIST not at the data root ($TRAV_GUI_DATA)")
    # Training images are made from MNIST's files on the fly, with the training seed's hues.
    assert x.shape == (60_000, 3, 28, 28) and torch.equal(y, grey_y) and digest != grey_digest
    expect = colored.colorize(np.rint(grey_x[:50, 0].numpy() * 255).astype(np.uint8),
                              colored.hues(60_000, colored.TRAIN_SEED)[:50])
    assert np.array_equal(np.rint(x[:50].numpy() * 255).astype(np.uint8), expect)
    # The ink's hue is unrelated to the label: every class spans the hue circle.
    hue = colored.hues(60_000, colored.TRAIN_SEED)
    for c in range(10):
        assert np.histogram(hue[grey_y.numpy() == c], bins=6, range=(0, 1))[0].min() > 500


def test_fashion_training_split_matches_the_shipped_test_set_and_a_missing_root_says_how_to_get_it(tmp_path):
    try:
        x, y, digest = data.load_training_set("fashion-mnist", False)
    except data.DatasetUnavailableError:
        pytest.skip("Fashion-MNIST not at the data root ($TRAV_GUI_DATA)")
    images, labels = data.test_set("fashion-mnist")
    assert torch.equal(x[:5, 0], torch.from_numpy(images[:5].copy()).float() / 255.0)
    assert y[:100].tolist() == labels[:100].tolist() and len(digest) == 64
    with pytest.raises(data.DatasetUnavailableError, match="Fashion-MNIST not found.*--download.*dataset-fashion-mnist"):
        data.load_training_set("fashion-mnist", True, tmp_path / "empty")


def test_a_run_that_mixes_data_sets_is_refused_by_name(mixed_folder, tmp_path, capsys):
    entries = [ModelEntry(name, None, "memory", ModelCard.model_validate({"dataset": ds}))
               for name, ds in (("robust", "mnist"), ("fashion-robust", "fashion-mnist"))]
    with pytest.raises(ValueError, match=r"robust \(mnist\), fashion-robust \(fashion-mnist\)"):
        check_one_dataset(entries)
    old = ModelCard.model_validate({"name": "old card"})  # cards before data sets were MNIST
    assert check_one_dataset([ModelEntry("old", None, "memory", old)]) == "mnist"
    with pytest.raises(ValueError, match='"dataset" must be one of mnist, fashion-mnist'):
        ModelCard.model_validate({"dataset": "cifar10"})
    code = main(["traverse", "--model", str(mixed_folder / "robust.safetensors"), "--model",
                 str(mixed_folder / "fashion-robust.safetensors"), "--index", "0", "--target", "7",
                 "--steps", "2", "--out", str(tmp_path / "o")])
    assert code == 2 and "different data sets" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_dataset_flag_traverses_a_fashion_image_and_checks_the_models(mixed_folder, tmp_path, capsys):
    out = tmp_path / "run"
    model = str(mixed_folder / "fashion-robust.safetensors")
    assert main(["traverse", "--dataset", "fashion-mnist", "--model", model, "--index", "0",
                 "--target", "7", "--steps", "3", "--out", str(out)]) == 0
    saved = np.load(out / "fashion-robust.npz")
    images, _ = data.test_set("fashion-mnist")
    assert np.allclose(saved["frames"][0], images[0] / 255.0)  # started from Fashion test image 0
    assert saved["probs"].shape == (4, 10)
    assert "Sneaker" in capsys.readouterr().out
    assert main(["traverse", "--dataset", "mnist", "--model", model, "--index", "0", "--target", "7",
                 "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--dataset mnist" in capsys.readouterr().err
    assert main(["models", "--folder", str(mixed_folder), "--dataset", "fashion-mnist"]) == 0
    listing = capsys.readouterr().out
    assert "fashion-robust" in listing and "fashion-mnist" in listing and "\nrobust " not in listing


def test_gallery_of_a_fashion_model_starts_from_the_first_garment_of_each_class(mixed_folder):
    model = load_model(mixed_folder / "fashion-standard.safetensors")
    g = run_gallery([model], ["f"], TraversalConfig(steps=1), dataset="fashion-mnist")
    images, labels = data.test_set("fashion-mnist")
    assert [int(labels[i]) for i in g.start_indices] == list(range(10))
    assert g.start_indices == tuple(gallery_start_indices("fashion-mnist")) != tuple(gallery_start_indices())
    assert np.allclose(g.images[0, 7, 7], images[g.start_indices[7]] / 255.0)


def test_the_app_switches_to_fashion_mnist_and_offers_only_its_models(qtbot, mixed_folder, tmp_path):
    window = make_window(qtbot, mixed_folder)
    assert [c.name for c in window.selector.entries()] == ["robust", "standard"]
    assert window.set_dataset("fashion-mnist")
    assert [c.name for c in window.selector.entries()] == ["fashion-robust", "fashion-standard"]
    assert {c.name for c in window.selector.selected_entries()} == {"fashion-robust", "fashion-standard"}
    assert window.target_picker.buttons[7].text() == "Sneaker"
    images, _ = data.test_set("fashion-mnist")
    assert np.allclose(window.input_panel.start_image, images[0] / 255.0)
    window.set_target(9)
    window.settings.max_steps.setValue(3)
    with qtbot.waitSignal(window.run_finished, timeout=20_000):
        window.play()
    column = window.view.columns[0]
    assert "P(Ankle boot)" in column.prediction.text
    record = window.current_record()
    assert record["extra"]["dataset"] == "fashion-mnist"
    write_run_record(tmp_path / "run.json", record)
    # Back to digits: the MNIST models again, digit labels on the buttons.
    assert window.set_dataset("mnist")
    assert [c.name for c in window.selector.selected_entries()] == ["robust", "standard"]
    assert window.target_picker.buttons[7].text() == "7"
    # Opening the Fashion run switches back to its data set and models.
    assert window.open_run_file(tmp_path / "run.json", play=False)
    assert window.dataset == "fashion-mnist" and window.input_panel.dataset_box.currentText() == "Fashion-MNIST"
    assert [c.name for c in window.selector.selected_entries()] == ["fashion-robust", "fashion-standard"]
