"""Export of a run: record round trip, validation, CSV, PNG, GIF, and all-or-nothing files."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from PIL import Image

from trav_gui import __version__
from trav_gui.engine import files
from trav_gui.engine.core.traversal import TraversalConfig, stack_frames, traverse
from trav_gui.engine.output import export as ex
from trav_gui.engine.output import render
from trav_gui.engine.runs import record as rec

from helpers import NanAfter

SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture
def run(two_models):
    """A real 6-step traversal of two linear models, stacked, with its record."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.2, 0.8, (28, 28)).astype(np.float32)
    config = TraversalConfig(steps=6, step_size=0.3, norm="l2", eps=1.0, objective="margin",
                             random_start=True, seed=7)
    arrays = stack_frames(list(traverse(two_models, x0, 3, config)))
    record = rec.build_run_record([rec.ModelRef("robust", SHA_A, "/m/robust.safetensors"),
                                  rec.ModelRef("standard", SHA_B)], x0, 3, config, test_index=15,
                                 extra={"device": "cpu"})
    return x0, config, arrays, record


def test_record_round_trips_exactly(tmp_path, run):
    x0, config, _, record = run
    rec.write_run_record(tmp_path / "run.json", record)
    back = rec.read_run_record(tmp_path)  # a folder means its run.json
    assert back.start_image.dtype == np.float32
    assert np.array_equal(back.start_image, x0)  # bit-exact, not approximately
    assert back.config == config and back.config.seed == 7
    assert back.target == 3 and back.test_index == 15
    assert [m.name for m in back.models] == ["robust", "standard"]
    assert [m.sha256 for m in back.models] == [SHA_A, SHA_B]
    assert back.app_version == __version__
    assert back.created.endswith("+00:00")
    raw = json.loads((tmp_path / "run.json").read_text())
    assert raw["config"] == config.to_dict() and raw["seed"] == 7 and raw["mode"] == "pgd"
    assert raw["start"]["source"] == "test_set" and raw["extra"] == {"device": "cpu"}


def _mutations():
    def set_(path, value):
        def f(r):
            node = r
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        return f

    def delete(key):
        return lambda r: r.pop(key)

    return {
        "format": (set_(["format"], "something.else"), "not a run record"),
        "newer": (set_(["format_version"], 99), "newer"),
        "no models": (set_(["models"], []), "'models'"),
        "sha": (set_(["models", 0, "sha256"], "xyz"), "sha256"),
        "shape": (set_(["start", "image"], [[0.0] * 28] * 27), "got 27×28"),
        "wrong world": (set_(["start", "image"], [[[0.0] * 28] * 28] * 3), "must be 28×28 for MNIST"),
        "class beyond the world": (set_(["target"], 10), "0..9 for MNIST"),
        "colour of four channels": (set_(["start", "image"], [[[0.0] * 28] * 28] * 4), "3×H×W"),
        "range": (set_(["start", "image", 3, 3], 1.5), "[0, 1]"),
        "nan": (set_(["start", "image", 3, 3], float("nan")), "NaN"),
        "index": (set_(["start", "test_index"], -1), "test_index"),
        "target": (set_(["target"], 1000), "'target'"),
        "bool target": (set_(["target"], True), "'target'"),
        "config key": (set_(["config", "speed"], 3), "unknown traversal settings"),
        "config value": (set_(["config", "norm"], "l3"), "norm"),
        "no config": (delete("config"), "'config'"),
        "seed": (set_(["seed"], 8), "seed"),
        "string pixels": (set_(["start", "image", 0, 0], "0.5"), "numbers only"),
        "bool pixels": (set_(["start", "image", 0, 0], True), "numbers only"),
        "image as object": (set_(["start", "image"], {"0": [0.0] * 28}), "such as 28×28"),
        "ragged image": (set_(["start", "image", 5], [0.0] * 29), "such as 28×28"),
        "too many models": (set_(["models"], [{"name": f"m{i}", "sha256": "a" * 64} for i in range(17)]),
                            "at most 16"),
        "huge name": (set_(["models", 0, "name"], "x" * 10_000), "models[0].name"),
        "path type": (set_(["models", 0, "path"], ["/a"]), "models[0].path"),
        "created type": (set_(["created"], {"when": 1}), "'created'"),
        "string step size": (set_(["config", "step_size"], "0.3"), "step size"),
        "zero steps": (set_(["config", "steps"], 0), "steps must be between"),
        "huge seed": (set_(["config", "seed"], 2**64), "seed must be"),
        "huge int pixel": (set_(["start", "image", 0, 0], 10**400), "[0, 1]"),
        "string index": (set_(["start", "test_index"], "3"), "start.test_index"),
        "float target": (set_(["target"], 3.0), "'target'"),
        "null seed": (set_(["seed"], None), "'seed'"),
        "string version": (set_(["format_version"], "1"), "'format_version'"),
    }


@pytest.mark.parametrize("name", sorted(_mutations()))
def test_bad_records_are_refused_with_the_field_named(tmp_path, run, name):
    mutate, words = _mutations()[name]
    record = json.loads(json.dumps(run[3], allow_nan=True))
    mutate(record)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    with pytest.raises(rec.RunRecordError, match=None) as info:
        rec.read_run_record(path)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unreadable_and_non_json_records(tmp_path):
    with pytest.raises(rec.RunRecordError, match="cannot read"):
        rec.read_run_record(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(rec.RunRecordError, match="not JSON"):
        rec.read_run_record(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(rec.RunRecordError, match="JSON object"):
        rec.read_run_record(tmp_path / "list.json")


def test_csv_has_one_row_per_step_and_model_with_exact_values(tmp_path, run):
    _, _, arrays, _ = run
    path = ex.write_steps_csv(tmp_path / "steps.csv", arrays, ["robust", "standard"])
    header = path.read_text().splitlines()[0].split(",")
    assert header == ["step", "model"] + [f"p{c}" for c in range(10)] + ["l2", "linf", "objective"]
    rows = ex.read_steps_csv(path)
    assert len(rows) == 7 * 2
    for row in rows:
        s, j = row["step"], ["robust", "standard"].index(row["model"])
        probs = [row[f"p{c}"] for c in range(10)]
        # 9 significant digits recover float32 exactly.
        assert np.array_equal(np.float32(probs), arrays["probs"][s, j, 0])
        assert np.float32(row["l2"]) == arrays["l2"][s, j, 0]
        assert np.float32(row["linf"]) == arrays["linf"][s, j, 0]
        assert np.float32(row["objective"]) == arrays["objective"][s, j, 0]


def test_csv_of_several_images_adds_an_image_column(tmp_path, two_models):
    x0 = np.full((3, 28, 28), 0.5, np.float32)
    arrays = stack_frames(list(traverse(two_models, x0, 1, TraversalConfig(steps=2))))
    rows = ex.read_steps_csv(ex.write_steps_csv(tmp_path / "s.csv", arrays, ["a", "b"]))
    assert len(rows) == 3 * 2 * 3
    assert sorted({r["image"] for r in rows}) == [0, 1, 2]


def test_png_frames_hold_the_pixels(tmp_path, run):
    _, _, arrays, _ = run
    written = ex.write_png_frames(tmp_path, arrays, ["robust", "standard"], scale=10)
    assert len(written) == 7 * 2 * 2
    small = np.asarray(Image.open(tmp_path / "frames" / "standard" / "step_00004.png"))
    big = np.asarray(Image.open(tmp_path / "frames_x10" / "standard" / "step_00004.png"))
    expected = np.round(arrays["images"][4, 1, 0] * 255).astype(np.uint8)
    assert small.shape == (28, 28) and np.array_equal(small, expected)
    assert big.shape == (280, 280) and np.array_equal(big[::10, ::10], expected)
    assert np.array_equal(big[5::10, 9::10], expected)  # nearest neighbour, no smoothing


def test_gif_is_side_by_side_with_one_frame_per_step(tmp_path, run):
    _, _, arrays, _ = run
    path = ex.write_animation(tmp_path / "t.gif", arrays, ["robust", "standard"], target=3, scale=4)
    gif = Image.open(path)
    assert gif.n_frames == 7
    single = render.render_side_by_side(arrays["images"][0, :, 0], arrays["probs"][0, :, 0],
                                    ["robust", "standard"], 0, 3, scale=4)
    assert gif.size == (single.shape[1], single.shape[0])
    assert single.shape[1] > 2 * 28 * 4  # two panels side by side


def test_animation_of_a_long_run_is_subsampled_keeping_first_and_last():
    idx = render.animation_indices(10_001)
    assert len(idx) <= render.MAX_ANIMATION_FRAMES and idx[0] == 0 and idx[-1] == 10_000
    assert np.array_equal(render.animation_indices(5), np.arange(5))


def test_export_run_writes_everything_and_reports_progress(tmp_path, run):
    _, _, arrays, record = run
    seen = []
    written = ex.export_run(tmp_path / "out", record, arrays, mp4=False,
                            progress=lambda d, t, w: seen.append((d, t)))
    out = tmp_path / "out"
    assert written[-1] == out / "run.json"  # the record last: its presence means complete
    assert {p.name for p in out.iterdir()} == {"run.json", "manifest.json", "steps.csv", "traversal.gif",
                                                "strip.png", "frames", "frames_x10",
                                                *(f"{m.name}.npz" for m in rec.validate_run_record(record).models)}
    assert seen[-1][0] == seen[-1][1]
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))
    assert not list(out.rglob("*.part"))


def test_strip_shows_chosen_steps_of_every_model_pixel_exact(tmp_path, run):
    _, _, arrays, _ = run
    scale = 3
    path = ex.write_strip(tmp_path / "strip.png", arrays, ["robust", "standard"], target=3,
                          columns=4, scale=scale)
    strip = np.asarray(Image.open(path).convert("L"))
    idx = render.animation_indices(len(arrays["step"]), 4)
    assert list(idx) == [0, 2, 4, 6] or (idx[0] == 0 and idx[-1] == len(arrays["step"]) - 1)
    # The last frame of the second model must appear, upscaled, somewhere in the strip.
    tile = np.kron(render.to_uint8(arrays["images"][idx[-1], 1, 0]), np.ones((scale, scale), np.uint8))
    h, w = tile.shape
    found = any(np.array_equal(strip[y:y + h, x:x + w], tile)
                for y in range(strip.shape[0] - h + 1) for x in range(strip.shape[1] - w + 1)
                if strip[y, x] == tile[0, 0])
    assert found
    # Two models, one row each: the strip is taller than two tiles and wider than four.
    assert strip.shape[0] > 2 * h and strip.shape[1] > 4 * w


def test_export_refuses_arrays_that_do_not_match_the_record(tmp_path, run):
    _, _, arrays, record = run
    with pytest.raises(ValueError, match="model names"):
        ex.export_run(tmp_path, record, arrays, ["only-one"])
    bad = dict(arrays, l2=arrays["l2"][:-1])
    with pytest.raises(ValueError, match="l2"):
        ex.write_steps_csv(tmp_path / "s.csv", bad, ["a", "b"])


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_a_crash_while_encoding_the_gif_leaves_no_gif(tmp_path, run, monkeypatch):
    _, _, arrays, _ = run

    def broken_save(self, fp, *a, **k):
        with open(fp, "wb") as f:
            f.write(b"GIF89a-partial")
        raise OSError("encoder died")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="encoder died"):
        ex.write_animation(tmp_path / "t.gif", arrays, ["a", "b"], target=3)
    assert list(tmp_path.iterdir()) == []


def test_cancelled_export_has_no_record(tmp_path, run):
    _, _, arrays, record = run
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(ex.ExportCancelled):
        ex.export_run(tmp_path, record, arrays, mp4=False, cancel=cancel)
    assert not (tmp_path / "run.json").exists()
    assert not list(tmp_path.rglob("*.part"))


def test_exported_files_get_the_usual_permissions_not_private_ones(tmp_path):
    import os
    import stat

    with files.atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask


# ----------------------------------------------------------------------------- hostile files


def test_a_huge_record_is_refused_without_reading_it_whole(tmp_path, run, monkeypatch):
    path = tmp_path / "run.json"
    path.write_bytes(b"{" + b" " * rec.MAX_RECORD_BYTES + b"}")
    parsed = []
    monkeypatch.setattr(ex.json, "loads", lambda *a, **k: parsed.append(1))
    with pytest.raises(rec.RunRecordError, match="too large"):
        rec.read_run_record(path)
    assert not parsed


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000],
                         ids=["lists", "objects"])
def test_deeply_nested_json_is_a_clear_error_not_a_recursion_crash(tmp_path, text):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(rec.RunRecordError, match="nested too deeply|JSON object"):
        rec.read_run_record(path)


def test_a_record_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(rec.RunRecordError, match="cannot read"):
        rec.read_run_record(path)


# ----------------------------------------------------------------------------- export faults


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fail_on_call(monkeypatch, name, n, exc):
    """Make ``ex.<name>`` raise ``exc`` on its n-th call (1-based); later calls work."""
    real = getattr(ex, name)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            if callable(exc):
                exc(*args)
            else:
                raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, name, flaky)
    return calls


def _disk_full(path, *_):
    # Half the file reaches the temporary name, then the disk is full.
    path.write_bytes(b"\x89PNG half")
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("fault", ["disk full mid-write", "read-only folder", "folder vanishes"])
def test_a_failed_export_leaves_no_half_file_no_record_and_can_be_retried(tmp_path, run, monkeypatch, fault):
    _, _, arrays, record = run
    clean = tmp_path / "clean"
    ex.export_run(clean, record, arrays, mp4=False)
    out = tmp_path / "out"
    if fault == "disk full mid-write":
        real_png = files.save_png

        def save_png(path, pixels):
            if path.name == "step_00003.png" and "frames_x10" in path.parts:
                with files.atomic_path(path) as tmp:
                    _disk_full(tmp)
            return real_png(path, pixels)

        monkeypatch.setattr(ex, "save_png", save_png)
        expected = OSError
    elif fault == "read-only folder":
        out.mkdir()

        def refuse(*a, dir=None, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))

        monkeypatch.setattr(ex.tempfile, "mkstemp", refuse)
        expected = PermissionError
    else:
        import shutil

        def progress(done, total, what):
            if "PNG frames of standard" in what and (out / "frames").exists():
                shutil.rmtree(out)  # the user deletes the folder while it is written

        expected = FileNotFoundError
    with pytest.raises(expected) as info:
        ex.export_run(out, record, arrays, mp4=False,
                      progress=progress if fault == "folder vanishes" else None)
    if fault == "disk full mid-write":
        assert info.value.errno == errno.ENOSPC
        assert not (out / "frames_x10" / "robust" / "step_00003.png").exists()
    if fault == "folder vanishes":
        assert "vanished" in str(info.value)
    if out.exists():
        assert not (out / "run.json").exists()  # not mistaken for a finished export
        assert not list(out.rglob("*.part"))
        done = _snapshot(out)
        reference = _snapshot(clean)
        assert all(done[name] == reference[name] for name in done), \
            "every file left behind is complete"

    monkeypatch.undo()  # the disk has room again / the folder is writable again
    ex.export_run(out, record, arrays, mp4=False)
    again, reference = _snapshot(out), _snapshot(clean)
    assert set(again) == set(reference)
    assert rec.read_run_record(out).config == record_config(record)


def record_config(record):
    return rec.validate_run_record(record).config


def test_exporting_over_an_older_export_drops_its_record_first(tmp_path, run, monkeypatch):
    _, _, arrays, record = run
    ex.export_run(tmp_path, record, arrays, mp4=False)
    assert (tmp_path / "run.json").exists()
    _fail_on_call(monkeypatch, "write_strip", 1, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError):
        ex.export_run(tmp_path, record, arrays, mp4=False)
    # steps.csv is new, the PNGs old: without a record nobody takes the mix for one run.
    assert not (tmp_path / "run.json").exists()


def test_the_frames_before_a_nan_step_export_like_any_run(tmp_path, two_models):
    from trav_gui.engine.core.traversal import NonFiniteOutputError

    x0 = np.full((28, 28), 0.5, np.float32)
    config = TraversalConfig(steps=50, step_size=0.1)
    frames = []
    with pytest.raises(NonFiniteOutputError) as err:
        for f in traverse([two_models[0], NanAfter(two_models[1], 4)], x0, 2, config):
            frames.append(f)
    assert err.value.step == 4 and len(frames) == 4
    arrays = stack_frames(frames)
    record = rec.build_run_record([rec.ModelRef("a", SHA_A), rec.ModelRef("b", SHA_B)], x0, 2, config,
                                 extra={"status": "failed", "steps_taken": 3})
    ex.export_run(tmp_path, record, arrays, mp4=False)
    assert len(ex.read_steps_csv(tmp_path / "steps.csv")) == 4 * 2
    assert len(list((tmp_path / "frames" / "b").glob("*.png"))) == 4
    assert rec.read_run_record(tmp_path).raw["extra"]["steps_taken"] == 3


# ----------------------------------------------------------------------------- re-export


def _steps_run(two_models, steps):
    x0 = np.full((28, 28), 0.5, np.float32)
    config = TraversalConfig(steps=steps, step_size=0.01)  # small steps: no early stop
    arrays = stack_frames(list(traverse(two_models, x0, 3, config)))
    record = rec.build_run_record([rec.ModelRef("robust", SHA_A), rec.ModelRef("standard", SHA_B)], x0, 3, config)
    return arrays, record


def _files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_a_shorter_export_over_a_longer_one_leaves_none_of_its_frames(tmp_path, two_models):
    ex.export_run(tmp_path, *reversed(_steps_run(two_models, 30)), mp4=False)
    assert (tmp_path / "frames" / "robust" / "step_00030.png").exists()
    arrays, record = _steps_run(two_models, 10)
    written = ex.export_run(tmp_path, record, arrays, mp4=False)
    pngs = sorted(p.name for p in tmp_path.rglob("step_*.png"))
    assert pngs and max(pngs) == "step_00010.png"  # nothing of step 11..30 is left
    assert len(pngs) == 11 * 2 * 2
    # The manifest names exactly what the export wrote, besides itself.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["files"]) == _files(tmp_path) - {"manifest.json"}
    assert {p.relative_to(tmp_path).as_posix() for p in written} == _files(tmp_path)
    assert ex.read_manifest(tmp_path) == manifest["files"]


def test_frames_of_models_no_longer_exported_go_with_their_folders(tmp_path, two_models):
    arrays, record = _steps_run(two_models, 5)
    ex.export_run(tmp_path, record, arrays, mp4=False)
    ex.export_run(tmp_path, record, arrays, ["fast", "slow"], mp4=False)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["fast", "slow"]
    assert sorted(p.name for p in (tmp_path / "frames_x10").iterdir()) == ["fast", "slow"]
    ex.export_run(tmp_path, record, arrays, png=False, gif=False, mp4=False)
    names = [m.name for m in rec.validate_run_record(record).models]
    # fast.npz and slow.npz of the second export went with its manifest.
    assert _files(tmp_path) == {"manifest.json", "run.json", "steps.csv", "strip.png", *(f"{n}.npz" for n in names)}
    assert not (tmp_path / "frames").exists()


def test_a_cancelled_export_is_cleaned_up_by_the_next(tmp_path, two_models):
    arrays, record = _steps_run(two_models, 30)
    calls = []
    with pytest.raises(ex.ExportCancelled):
        ex.export_run(tmp_path, record, arrays, mp4=False, cancel=lambda: calls.append(1) or len(calls) > 40)
    assert (tmp_path / "frames" / "robust" / "step_00030.png").exists()
    assert not (tmp_path / "run.json").exists()
    arrays, record = _steps_run(two_models, 3)
    ex.export_run(tmp_path, record, arrays, mp4=False)
    assert max(p.name for p in tmp_path.rglob("step_*.png")) == "step_00003.png"


def _bait(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("keep me")
    (out / "steps.csv").write_text("not ours to keep either")
    return out, outside


@pytest.mark.parametrize("name", ["../outside.txt", "ABSOLUTE", "frames/../../outside.txt", "frames/x/../../../outside.txt",
                                  "./steps.csv", "steps.csv/", "frames\\..\\..\\outside.txt", "outside.txt"])
def test_a_manifest_cannot_delete_outside_the_folder_or_what_is_not_ours(tmp_path, run, name):
    _, _, arrays, record = run
    out, outside = _bait(tmp_path)
    name = str(outside) if name == "ABSOLUTE" else name
    # A single bad name makes the whole manifest untrusted: not even steps.csv is deleted first.
    (out / "manifest.json").write_text(json.dumps({"format": "trav_gui.export", "files": [name, "steps.csv"]}))
    assert ex.read_manifest(out) == []
    if name != "outside.txt":  # not a name an export writes, but a plain one inside the folder
        assert files.remove_files_inside(out, [name]) == []  # the second guard, on its own
    (out / "outside.txt").write_text("a file of the user's")
    ex.export_run(out, record, arrays, png=False, gif=False, mp4=False)
    assert outside.read_text() == "keep me"
    assert (out / "outside.txt").read_text() == "a file of the user's"


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"files": ["steps.csv"]}',
                                  '{"format": "trav_gui.export", "files": "steps.csv"}',
                                  '{"format": "trav_gui.export", "files": [["steps.csv"]]}',
                                  '{"format": "trav_gui.export", "files": ' + "[" * 100_000 + "]" * 100_000 + "}"])
def test_a_missing_or_malformed_manifest_deletes_nothing(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    assert ex.read_manifest(tmp_path) == []
    assert ex.read_manifest(tmp_path / "missing") == []


@pytest.mark.parametrize("dir_fd", [True, False], ids=["dir_fd", "by path"])
def test_a_manifest_does_not_follow_symlinks_out_of_the_folder(tmp_path, run, monkeypatch, dir_fd):
    _, _, arrays, record = run
    monkeypatch.setattr(files, "_HAVE_DIR_FD", dir_fd and files._HAVE_DIR_FD)
    out, outside = _bait(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "m").mkdir(parents=True)
    (elsewhere / "m" / "step_00000.png").write_text("keep me")
    (out / "frames").symlink_to(elsewhere, target_is_directory=True)  # frames/m/... lies outside
    (out / "strip.png").symlink_to(outside)  # a link named like ours: the link is not a file of ours
    (out / "manifest.json").write_text(json.dumps(
        {"format": "trav_gui.export", "files": ["frames/m/step_00000.png", "strip.png", "steps.csv"]}))
    assert files.remove_files_inside(out, ex.read_manifest(out)) == ["steps.csv"]
    assert (elsewhere / "m" / "step_00000.png").read_text() == "keep me"
    assert outside.read_text() == "keep me"
    (out / "frames").unlink()
    ex.export_run(out, record, arrays, gif=False, mp4=False)
    assert outside.read_text() == "keep me" and not (out / "strip.png").is_symlink()


def test_a_symlinked_or_special_manifest_is_not_trusted(tmp_path):
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"format": "trav_gui.export", "files": ["steps.csv"]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").symlink_to(real)
    assert ex.read_manifest(out) == []
    (out / "manifest.json").unlink()
    os.mkfifo(out / "manifest.json")  # would block a plain open() forever
    assert ex.read_manifest(out) == []


def test_an_export_folder_that_is_itself_a_symlink_is_cleaned_up(tmp_path, two_models):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)  # e.g. ~/exports -> /data/exports
    ex.export_run(link, *reversed(_steps_run(two_models, 12)), mp4=False)
    ex.export_run(link, *reversed(_steps_run(two_models, 4)), mp4=False)
    assert max(p.name for p in real.rglob("step_*.png")) == "step_00004.png"
