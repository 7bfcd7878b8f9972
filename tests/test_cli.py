"""The trav-gui command line: traverse, gallery, models, and its errors."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from helpers import NanAfter
from PIL import Image

from trav_gui import __version__
from trav_gui.cli import main
from trav_gui.engine.data.datasets import test_digits as shipped_digits
from trav_gui.engine.output.gallery import gallery_start_indices
from trav_gui.engine.runs.record import read_run_record


def test_version_and_help_as_a_console_script():
    out = subprocess.run([sys.executable, "-m", "trav_gui", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"trav-gui {__version__}"
    out = subprocess.run([sys.executable, "-m", "trav_gui", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "traverse" in out.stdout and "gallery" in out.stdout


def test_help_and_argument_errors_load_no_torch():
    """trav-gui --help must answer at once: torch alone takes seconds to import."""
    code = ("import sys; from trav_gui.cli import main\n"
            "for argv in (['--help'], ['traverse', '--help'], ['traverse', '--steps', 'x']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'numpy', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOADED []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]
    assert "invalid int value: 'x'" in out.stderr


def test_the_torch_free_defaults_are_the_engines():
    from trav_gui.engine.core import defaults
    from trav_gui.engine.core.objectives import OBJECTIVES
    from trav_gui.engine.core.steps import NORMS
    from trav_gui.engine.core.traversal import DEFAULTS

    assert defaults.NORM_NAMES == tuple(NORMS) and defaults.OBJECTIVE_NAMES == tuple(OBJECTIVES)
    assert (DEFAULTS.steps, DEFAULTS.step_size, DEFAULTS.norm, DEFAULTS.objective, DEFAULTS.seed) == (
        defaults.STEPS, defaults.STEP_SIZE, defaults.NORM, defaults.OBJECTIVE, defaults.SEED)


def test_a_reader_that_stops_early_gets_no_traceback():
    """trav-gui models --json | head -1: exit quietly (SIGPIPE's status), as Unix tools do."""
    # The reader is gone before the first line (as head is after its first, once the pipe's
    # buffer is full): a pipe whose reading end is already closed makes that certain.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([sys.executable, "-m", "trav_gui", "models", "--json"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == 141


def test_an_unknown_data_set_is_one_line(model_folder, tmp_path, capsys):
    a = str(model_folder / "a.safetensors")
    assert main(["traverse", "--model", a, "--index", "1", "--target", "0", "--dataset", "nope",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --dataset: no data set 'nope'; known: ") and "mnist" in err and "\n" not in err


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
    assert record.test_index == 15 and record.target == 0 and record.config.steps == 4
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
    assert read_run_record(out).test_index is None


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


# ----------------------------------------------------------------------------- hostile input


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels, with no pixel data at all."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("name, make, message", [
    ("big", lambda p: _png_header_only(p, 5000, 5000), "image too large (5000x5000"),
    ("bomb", lambda p: _png_header_only(p, 40_000, 40_000), "image too large"),
    ("truncated", lambda p: (Image.fromarray(np.zeros((64, 64), np.uint8)).save(p),
                             p.write_bytes(p.read_bytes()[:60])), "cannot read image"),
    ("not an image", lambda p: p.write_bytes(b"hello"), "cannot read image"),
    ("blank white", lambda p: Image.fromarray(np.full((100, 80), 255, np.uint8)).save(p), "image is empty"),
    ("blank 28x28", lambda p: Image.fromarray(np.zeros((28, 28), np.uint8)).save(p), "image is empty"),
])
def test_hostile_or_empty_images_are_one_clear_line_and_exit_2(model_folder, tmp_path, capsys, name, make, message):
    path = tmp_path / f"{name.replace(' ', '_')}.png"
    make(path)
    out = tmp_path / "o"
    code = main(["traverse", "--model", str(model_folder / "a.safetensors"), "--image", str(path),
                 "--target", "3", "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("argv, message", [
    (["--eps", "0"], "eps must be > 0"),
    (["--eps", "-1"], "eps must be > 0"),
    (["--eps", "inf"], "eps must be > 0"),
    (["--step-size", "-0.5"], "step size must be > 0"),
    (["--step-size", "nan"], "step size must be > 0"),
    (["--step-size", "1e39"], "at most 100"),
    (["--steps", "-3"], "steps must be between"),
    (["--steps", "1000000000"], "steps must be between"),
    (["--seed", "-1"], "seed must be"),
    (["--stop-at-prob", "2"], "stop_at_prob"),
])
def test_bad_settings_are_refused_before_loading_anything(model_folder, tmp_path, capsys, argv, message):
    code = main(["traverse", "--model", str(model_folder / "a.safetensors"), "--index", "3", "--target", "1",
                 *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 3], "not a valid safetensors"),
    (lambda d: (10**9).to_bytes(8, "little") + d[8:], "header says"),
    (lambda d: d[:8] + b"\xff" * 40 + d[48:], "not a valid safetensors"),
])
def test_a_damaged_model_file_is_refused_with_exit_2(model_folder, tmp_path, capsys, damage, message):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(damage((model_folder / "a.safetensors").read_bytes()))
    code = main(["traverse", "--model", str(bad), "--index", "0", "--target", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_target_equal_to_the_start_class_runs_and_says_it_is_reached_at_step_0(model_folder, tmp_path, capsys):
    import torch

    from trav_gui.engine.models.loading import load_model

    x0 = shipped_digits()[0][3].astype(np.float32) / 255
    start_class = int(load_model(model_folder / "a.safetensors")(torch.from_numpy(x0)[None, None]).argmax())
    assert main(["traverse", "--model", str(model_folder / "a.safetensors"), "--index", "3",
                 "--target", str(start_class), "--steps", "3", "--out", str(tmp_path / "o")]) == 0
    assert f"first predicted {start_class} at step 0" in capsys.readouterr().out


def test_nan_mid_run_exits_1_and_writes_the_frames_before_it(model_folder, tmp_path, capsys, monkeypatch):

    from trav_gui import cli

    real = cli._load_models

    def load(names, dataset=None):
        models, refs, found = real(names, dataset)
        return [NanAfter(models[0], 5)], refs, found

    monkeypatch.setattr(cli, "_load_models", load)
    out = tmp_path / "o"
    code = main(["traverse", "--model", str(model_folder / "a.safetensors"), "--index", "3", "--target", "1",
                 "--steps", "50", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "NaN or inf at step 5" in err and "writing the 5 frames" in err
    assert np.load(out / "a.npz")["frames"].shape == (5, 28, 28)
    assert read_run_record(out).config.steps == 50
    assert len(list((out / "frames" / "a").glob("*.png"))) == 5


# ----------------------------------------------------------------------------- one source of settings


def _options(parser) -> dict:
    """``--option`` -> its argparse action, for one subcommand's parser."""
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings}


@pytest.mark.parametrize("command", ["traverse", "gallery"])
def test_defaults_and_choices_are_the_engines(command):
    from trav_gui.cli import build_parser
    from trav_gui.engine.core.objectives import OBJECTIVES
    from trav_gui.engine.core.steps import NORMS
    from trav_gui.engine.core.traversal import DEFAULTS, TraversalConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = _options(sub)
    assert DEFAULTS == TraversalConfig()
    for option, field in [("--steps", "steps"), ("--step-size", "step_size"), ("--norm", "norm"),
                          ("--eps", "eps"), ("--objective", "objective"), ("--seed", "seed")]:
        assert options[option].default == getattr(DEFAULTS, field), option
    if command == "traverse":
        assert options["--stop-at-prob"].default == DEFAULTS.stop_at_prob
    assert list(options["--norm"].choices) == list(NORMS)
    assert list(options["--objective"].choices) == list(OBJECTIVES)
    # and a run with no settings given is a run with the engine's defaults
    args = parser.parse_args([command, "--model", "robust", "--out", "o",
                              *(["--index", "0", "--target", "1"] if command == "traverse" else [])])
    from trav_gui.cli import _config_from

    assert _config_from(args) == DEFAULTS
