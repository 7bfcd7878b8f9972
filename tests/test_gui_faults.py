"""The window under faults: bad files, failing exports, NaN models, closing and restarting
in every state, and a user clicking fast."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from trav_gui.engine import files
from trav_gui.engine.files import sha256_of
from trav_gui.engine.data import datasets as data
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.output import export as ex
from trav_gui.engine.runs import record as rec
from trav_gui.qt.window import MainWindow

from helpers import NanAfter, make_window

STEPS = 20


@pytest.fixture
def window(qtbot, gui_models):
    w = make_window(qtbot, gui_models)
    w.settings.max_steps.setValue(STEPS)
    w.settings.step_size.setValue(0.5)
    w.input_panel.pick_example(15)
    return w


def long_runs(w) -> None:
    """Settings for a run that lasts until it is stopped."""
    w.settings.max_steps.setValue(10_000)
    w.settings.step_size.setValue(0.0005)


def play_to_end(qtbot, w, timeout=20_000) -> str:
    with qtbot.waitSignal(w.run_finished, timeout=timeout) as blocker:
        assert w.play()
    return blocker.args[0]


def wait_threads_done(qtbot, w) -> None:
    qtbot.waitUntil(lambda: not w.runs.threads() and not w.exporter.busy, timeout=10_000)


# ----------------------------------------------------------------------------- untrusted files


def _state():
    torch.manual_seed(0)
    return {k: v.clone() for k, v in SmallCNN().state_dict().items()}


def _write_bad_model(path, kind):
    from safetensors.torch import save_file

    state = _state()
    if kind == "nan weights":
        state["features.0.weight"][0, 0, 0, 0] = float("nan")
    elif kind == "inf weights":
        state["classifier.3.bias"][0] = float("inf")
    elif kind == "wrong shape":
        state["classifier.3.weight"] = torch.zeros(7, 128)
    if kind == "truncated":
        save_file(state, str(path))
        path.write_bytes(path.read_bytes()[:5000])
    else:
        save_file(state, str(path))


@pytest.mark.parametrize("kind, words", [
    ("nan weights", "NaN or inf"), ("inf weights", "NaN or inf"),
    ("wrong shape", "has shape (7, 128)"), ("truncated", "not a valid safetensors"),
])
def test_a_damaged_model_file_is_a_dialog_and_nothing_is_added(qtbot, window, tmp_path, kind, words):
    bad = tmp_path / "bad.safetensors"
    _write_bad_model(bad, kind)
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.add_model_file(bad)
    assert words in window.last_error and window.error_dialog.isVisible()
    assert len(window.selector.entries()) == 2 and [c.name for c in window.view.columns] == ["robust", "standard"]


@pytest.mark.parametrize("change, words", [
    (lambda r: r["config"].update(steps=50_000), "at most 10000"),
    (lambda r: r["models"].append(dict(r["models"][0], name="again")), "compares a model with itself"),
    (lambda r: r["start"]["image"][3].__setitem__(3, "0.5"), "numbers only"),
    (lambda r: r.update(target=12), "'target'"),
])
def test_a_refused_run_file_leaves_the_run_on_screen_untouched(qtbot, window, tmp_path, change, words):
    assert play_to_end(qtbot, window) == "completed"
    before = window.history.stacked()
    settings = window.settings.config()
    record = window.current_record()
    change(record)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.open_run_file(path)
    assert words in window.last_error
    assert window.history is not None and np.array_equal(window.history.stacked()["images"], before["images"])
    assert window.settings.config() == settings and window.run_status == "completed"


# ----------------------------------------------------------------------------- settings


def test_a_target_equal_to_the_start_class_runs_with_a_note(qtbot, window):
    # The two random models disagree on every digit: compare one, so all predict one class.
    window.selector.set_selected([window.selector.selected_entries()[0].key])
    (start_class,) = {int(p.argmax()) for p in window._start_probs.values()}
    window.set_target(start_class)
    assert play_to_end(qtbot, window) == "completed"
    assert f"already predict {start_class}" in window.statusBar().currentMessage()
    assert window.history.flip_steps() == [0]
    p = window.history.probs[:, 0, start_class]
    assert p[-1] > p[0]


def test_settings_widgets_cannot_express_bad_values(window):
    s = window.settings
    for spin, low in ((s.step_size, 0.0), (s.eps, 0.0), (s.max_steps, 0)):
        spin.setValue(low - 1)
        assert spin.value() > 0  # clamped to the spin box's minimum
    s.max_steps.setValue(10**9)
    assert s.max_steps.value() == 10_000
    s.config()  # valid


def test_the_window_starts_with_the_shipped_digits_when_the_data_root_is_damaged(qtbot, gui_models, tmp_path,
                                                                               monkeypatch):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"garbage")
    monkeypatch.setenv("TRAV_GUI_DATA", str(tmp_path / "data"))
    w = make_window(qtbot, gui_models)
    assert w.input_panel.pick_button.isEnabled()
    w.input_panel.pick_example(15)
    assert w.input_panel.start_image is not None


def test_the_window_starts_without_the_picker_when_the_shipped_digits_are_damaged(qtbot, gui_models, tmp_path,
                                                                                monkeypatch):
    (tmp_path / "mnist_test.npz").write_bytes(b"PK\x03\x04 broken")
    monkeypatch.setenv("TRAV_GUI_RESOURCES", str(tmp_path))
    data.test_set.cache_clear()
    try:
        w = make_window(qtbot, gui_models)
    finally:
        monkeypatch.undo()
        data.test_set.cache_clear()
    assert not w.input_panel.pick_button.isEnabled()
    assert "not found" in w.input_panel.true_label.text()
    assert len(w.view.columns) == 2  # drawing still works


# ----------------------------------------------------------------------------- NaN mid-run


def test_nan_mid_run_keeps_the_frames_before_it_and_they_export(qtbot, window, tmp_path):
    card = window.selector.selected_entries()[1]
    window.models.put(card.key, NanAfter(window.models.get(card.key), 6))
    with qtbot.waitSignal(window.run_finished, timeout=10_000) as blocker:
        window.play()
    assert blocker.args == ["failed"]
    assert "NaN or inf at step 6" in window.last_error and "up to step 5 are kept" in window.last_error
    assert len(window.history) == 6 and list(window.history.steps) == list(range(6))
    assert window.menu_actions.export.isEnabled()
    with qtbot.waitSignal(window.export_finished, timeout=30_000):
        assert window.export_to(tmp_path / "out")
    wait_threads_done(qtbot, window)
    record = rec.read_run_record(tmp_path / "out")
    assert record.raw["extra"]["status"] == "failed" and record.raw["extra"]["steps_taken"] == 5
    assert len(ex.read_steps_csv(tmp_path / "out" / "steps.csv")) == 6 * 2


# ----------------------------------------------------------------------------- export faults


@pytest.mark.parametrize("fault", ["disk full", "read-only folder"])
def test_a_failed_export_shows_an_error_keeps_the_run_and_the_retry_works(qtbot, window, tmp_path, monkeypatch,
                                                                          fault):
    assert play_to_end(qtbot, window) == "completed"
    before = window.history.stacked()
    out = tmp_path / "out"
    if fault == "disk full":
        real = files.save_png

        def save_png(path, pixels):
            if path.name == "step_00004.png":
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, pixels)

        monkeypatch.setattr(ex, "save_png", save_png)
        words = "No space left on device"
    else:
        def refuse(*a, dir=None, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))

        monkeypatch.setattr(ex.tempfile, "mkstemp", refuse)
        words = "Permission denied"
    with qtbot.waitSignal(window.export_failed, timeout=30_000) as blocker:
        assert window.export_to(out)
    wait_threads_done(qtbot, window)
    message = blocker.args[0]
    assert words in message and "export again" in message and "Traceback" not in message
    assert window.error_dialog.isVisible() and window.last_error == message
    assert not (out / "run.json").exists() and not list(tmp_path.rglob("*.part"))
    # The run is untouched and still exportable.
    assert np.array_equal(window.history.stacked()["images"], before["images"])
    assert window.menu_actions.export.isEnabled() and window.run_status == "completed"

    monkeypatch.undo()
    with qtbot.waitSignal(window.export_finished, timeout=30_000):
        assert window.export_to(out)
    wait_threads_done(qtbot, window)
    assert rec.read_run_record(out).target == window.target_picker.target
    assert len(list((out / "frames" / "robust").glob("*.png"))) == STEPS + 1


# ----------------------------------------------------------------------------- every state


def _enter(qtbot, w, state, tmp_path):
    """Bring ``w`` into ``state``; returns the export folder when exporting."""
    if state in ("running", "paused"):
        long_runs(w)
        w.play()
        qtbot.waitUntil(lambda: w.history is not None and len(w.history) > 3, timeout=5000)
        if state == "paused":
            w.toggle_play()
            assert w.run_status == "paused"
    elif state == "completed":
        assert play_to_end(qtbot, w) == "completed"
    elif state == "exporting":
        assert play_to_end(qtbot, w) == "completed"
        assert w.export_to(tmp_path / "export")
        assert w.exporter.busy
        return tmp_path / "export"
    return None


STATES = ["idle", "running", "paused", "completed", "exporting"]


@pytest.mark.parametrize("state", STATES)
def test_closing_in_every_state_leaves_no_thread_and_loses_no_export(qtbot, gui_models, tmp_path, state):
    w = MainWindow(models_folder=gui_models, device="cpu")
    w.show()
    w.settings.max_steps.setValue(STEPS)
    w.input_panel.pick_example(15)
    export = _enter(qtbot, w, state, tmp_path)
    threads = w.runs.threads() + ([w.exporter.job.thread] if w.exporter.busy else [])
    if export is not None:
        with qtbot.waitSignal(w.export_finished, timeout=30_000):
            w.close()
            assert w.isVisible(), "closing during an export waits for it"
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=5000)
        assert rec.read_run_record(export).config.steps == STEPS
    else:
        w.close()
        assert not w.isVisible()
    assert not any(t.isRunning() for t in threads)
    assert not w.runs.threads() and not w.exporter.busy
    w.deleteLater()


@pytest.mark.parametrize("state", STATES)
def test_a_new_run_in_every_state_replaces_the_old_one_cleanly(qtbot, window, tmp_path, state):
    export = _enter(qtbot, window, state, tmp_path)
    old_id = window.runs.run_id
    window.settings.max_steps.setValue(STEPS)
    window.settings.step_size.setValue(0.5)
    new_target = (window.target_picker.target + 3) % 10
    window.set_target(new_target)  # leaves the old run
    assert window.history is None and window.run_status == "idle"
    assert play_to_end(qtbot, window) == "completed"
    assert window.runs.run_id == old_id + 1
    assert window.history.target == new_target and list(window.history.steps) == list(range(STEPS + 1))
    if export is not None:
        qtbot.waitUntil(lambda: not window.exporter.busy, timeout=30_000)
        assert rec.read_run_record(export).target != new_target  # the old run's export, complete
    wait_threads_done(qtbot, window)


# ----------------------------------------------------------------------------- stress


def test_200_rapid_play_stop_reset_and_target_changes_end_consistent(qtbot, window):
    long_runs(window)
    rng = np.random.default_rng(7)
    started = []
    window.run_started.connect(started.append)
    actions = ["play", "toggle", "stop", "reset", "target", "step"]
    for i in range(200):
        action = actions[rng.integers(len(actions))]
        if action == "play":
            window.play()
        elif action == "toggle":
            window.toggle_play()
        elif action == "stop":
            window.stop()
        elif action == "reset":
            window.reset()
        elif action == "target":
            window.set_target(int(rng.integers(10)))
        else:
            window.step_once()
        qtbot.wait(int(rng.integers(0, 4)))
        h = window.history
        # At every moment: what is on screen belongs to the current target and one run.
        if h is not None:
            assert h.target == window.target_picker.target
            assert list(h.steps) == list(range(len(h)))
            assert window.runs.context.run_id == window.runs.run_id
        else:
            assert window.run_status == "idle"
    assert started == sorted(started) and len(set(started)) == len(started) and len(started) > 20
    window.stop()
    wait_threads_done(qtbot, window)
    qtbot.wait(50)  # let any frame batch of a stopped run arrive: it must be dropped
    h = window.history
    if h is not None and len(h) == 0:
        # Stopped before its first frame arrived: nothing to show but the start.
        assert window.run_status == "stopped" and not window.menu_actions.export.isEnabled()
        assert np.array_equal(window.view.columns[0].frame_item.image, window.input_panel.start_image)
    elif h is not None:
        n = len(h)
        assert list(h.steps) == list(range(n)) and h.target == window.target_picker.target
        np.testing.assert_array_equal(h.images[0, 0], window.input_panel.start_image)
        window.display.redraw(force=True)
        for j, column in enumerate(window.view.columns):
            assert np.array_equal(column.frame_item.image, h.images[window.timeline.value(), j])
        assert window.timeline.maximum() == n - 1
    else:
        assert window.timeline.maximum() == 0
        assert np.array_equal(window.view.columns[0].frame_item.image, window.input_panel.start_image)
    assert window.run_status in ("idle", "stopped", "completed") and not window.worker_running
    # The window still works normally afterwards.
    window.settings.max_steps.setValue(STEPS)
    window.settings.step_size.setValue(0.5)
    assert play_to_end(qtbot, window) == "completed" and len(window.history) == STEPS + 1


def test_a_run_too_short_for_a_recipe_s_retry_says_so(qtbot, gui_models):
    """A recipe that goes back to its start where its critic rejects the endpoint needs room for a
    second pull: a run of fewer steps than its card's figures were measured at says so."""
    recipe = {"models": ["robust"], "prior": "score-mnist", "prior_weight": 0.15, "anneal_steps": 5,
              "stop": "plateau", "patience": 2, "finish_sigmas": [0.3], "critic": "critic-mnist",
              "retry": {"renoise": True, "sigma_max": 1.0}, "retry_below": -4.0}
    path = gui_models / "retrying.recipe"
    path.write_text(json.dumps(recipe))
    (gui_models / "retrying.json").write_text(json.dumps({
        "kind": "recipe", "dataset": "mnist", "recipe": "retrying.recipe", "sha256": sha256_of(path),
        "evaluation": {"realism": {"steps": 300, "success": 0.9}}}))
    w = make_window(qtbot, gui_models)
    w.settings.max_steps.setValue(STEPS)
    w.input_panel.pick_example(15)
    key = next(e.key for e in w.selector.entries() if e.name == "retrying")
    w.selector.set_selected([key])
    w.set_target(0)
    assert play_to_end(qtbot, w) == "completed"
    note = w.statusBar().currentMessage()
    assert "retrying goes back to its start" in note and f"{STEPS} steps leave too little room" in note and "give it 300" in note
    w.settings.max_steps.setValue(300)
    w.settings.step_size.setValue(0.5)
    w.statusBar().clearMessage()
    assert play_to_end(qtbot, w) == "completed"
    assert "goes back to its start" not in w.statusBar().currentMessage()
    from trav_gui.qt.gallery_tab import ROW_FROM_START  # the Gallery tab's status line says it too

    w.gallery_tab.steps.setValue(3)
    w.gallery_tab.rows.setCurrentText(ROW_FROM_START)
    with qtbot.waitSignal(w.gallery_tab.gallery_finished, timeout=60_000):
        assert w.gallery_tab.compute()
    assert "Note: retrying goes back to its start" in w.gallery_tab.status.text()
