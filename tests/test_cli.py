"""The trav-gui command line: traverse, gallery, models, and its errors."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from trav_gui import __version__
from trav_gui.cli import main
from trav_gui.engine.data import test_digits as shipped_digits
from trav_gui.engine.export import read_run_record
from trav_gui.engine.gallery import gallery_start_indices


def test_version_and_help_as_a_console_script():
    out = subprocess.run([sys.executable, "-m", "trav_gui", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"trav-gui {__version__}"
    out = subprocess.run([sys.executable, "-m", "trav_gui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "traverse" in out.stdout and "gallery" in out.stdout


def test_traverse_writes_npz_frames_csv_gif_and_a_replayable_record(model_folder, tmp_path, capsys):
    a, b = str(model_folder / "a.safetensors"), str(model_folder / "b.safetensors")
    out = tmp_path / "run"
    assert main(["traverse", "--model", a, "--model", b, "--index", "15", "--target", "0",
                 "--steps", "4", "--out", str(out)]) == 0
    for name in ("a", "b"):
        z = np.load(out / f"{name}.npz")
        assert z["frames"].shape == (5, 28, 28) and z["frames"].dtype == np.float32
        assert z["probs"].shape == (5, 10) and z["l2"].shape == (5,) and z["linf"].shape == (5,)
        np.testing.assert_allclose(z["probs"].sum(1), 1, atol=1e-5)
        assert (out / "frames" / name).is_dir()
    images, _ = shipped_digits()
    np.testing.assert_allclose(np.load(out / "a.npz")["frames"][0], images[15] / 255.0, atol=1e-6)
    record = read_run_record(out)
    assert record.mnist_index == 15 and record.target == 0 and record.config.steps == 4
    assert [m.name for m in record.models] == ["a", "b"]
    assert (out / "traversal.gif").stat().st_size > 0
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + 5 * 2
    assert "wrote" in capsys.readouterr().out


def test_traverse_from_a_png_drawing(model_folder, tmp_path):
    drawing = np.full((200, 150), 255, np.uint8)  # black ink on white, as people draw
    drawing[40:160, 60:80] = 0
    Image.fromarray(drawing).save(tmp_path / "one.png")
    out = tmp_path / "run"
    assert main(["traverse", "--model", str(model_folder / "a.safetensors"), "--image", str(tmp_path / "one.png"),
                 "--target", "7", "--steps", "2", "--out", str(out)]) == 0
    start = np.load(out / "a.npz")["frames"][0]
    assert start.max() > 0.9 and start[0, 0] == 0  # inverted to light ink on dark, centred
    assert read_run_record(out).mnist_index is None


@pytest.mark.parametrize("argv,message", [
    (["--index", "10000", "--target", "0"], "--index must be"),
    (["--index", "1", "--target", "12"], "--target must be"),
    (["--index", "1", "--target", "0", "--step-size", "0"], "step size must be > 0"),
    (["--index", "1", "--target", "0", "--steps", "0"], "steps must be between"),
    (["--image", "missing.png", "--target", "0"], "cannot read image"),
])
def test_bad_input_is_one_clear_line_and_exit_2(model_folder, tmp_path, capsys, argv, message):
    code = main(["traverse", "--model", str(model_folder / "a.safetensors"), *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_a_pickle_model_is_refused_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"x": 1}))
    assert main(["traverse", "--model", str(bad), "--index", "0", "--target", "1", "--out", str(tmp_path / "o")]) == 2
    assert "pickle" in capsys.readouterr().err


def test_gallery_writes_one_grid_per_model_and_one_side_by_side(model_folder, tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["gallery", "--model", str(model_folder / "a.safetensors"), "--model",
                 str(model_folder / "b.safetensors"), "--steps", "2", "--out", str(out)]) == 0
    a = Image.open(out / "gallery_a.png")
    both = Image.open(out / "gallery_side_by_side.png")
    assert both.width > 2 * a.width - 1 and (out / "gallery_b.png").exists()
    assert capsys.readouterr().out.count("/90 traversals reached") == 2


def test_gallery_rows_are_one_digit_of_each_class():
    _, labels = shipped_digits()
    assert [int(labels[i]) for i in gallery_start_indices()] == list(range(10))


def test_models_lists_cards(model_folder, capsys):
    assert main(["models", "--folder", str(model_folder), "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["a", "b"]
