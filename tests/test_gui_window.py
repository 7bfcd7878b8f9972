"""The main window as a user drives it: pick, draw, play, pause, step, scrub, export, reopen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from trav_gui.engine.data import datasets as data
from trav_gui.engine.data.preprocess import drawing_to_mnist
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.weights import save_model
from trav_gui.engine.output.export import read_steps_csv
from trav_gui.engine.runs.record import read_run_record
from trav_gui.qt.window import MainWindow

from helpers import draw_vertical_bar, make_window

STEPS = 25


@pytest.fixture
def window(qtbot, gui_models):
    w = make_window(qtbot, gui_models)
    w.settings.max_steps.setValue(STEPS)
    w.settings.step_size.setValue(0.5)
    return w


def start_prediction(window) -> list[int]:
    """Each ticked model's class for the start image, in column order (from the window's predictions,
    not from what the columns draw)."""
    return [int(p.argmax()) for p in window._start_probs.values()]


def other_target(window) -> int:
    return (start_prediction(window)[0] + 1) % 10


def play_to_end(qtbot, window, timeout=20_000) -> str:
    with qtbot.waitSignal(window.run_finished, timeout=timeout) as blocker:
        assert window.play()
    return blocker.args[0]


def curve_y(curve) -> np.ndarray:
    return np.asarray(curve.getData()[1])


def test_starts_with_default_models_ticked_and_their_accuracy_listed(window):
    assert [c.name for c in window.selector.selected_entries()] == ["robust", "standard"]
    assert [c.name for c in window.view.columns] == ["robust", "standard"]
    item = window.selector.list.item(0).text()
    assert "clean 50.0%" in item and "robust 30.0% (L2 ε 2.0, l2-pgd)" in item
    assert window.status_device.text() == "device: CPU"


def test_no_models_shows_a_message_and_play_explains(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path / "empty")
    assert "No models found" in w.view.message
    assert not w.play_button.isEnabled()
    w.input_panel.pick_example(15)
    with qtbot.waitSignal(w.error_shown, timeout=2000):
        assert not w.play()
    assert "Add model" in w.last_error


def test_picking_an_example_shows_label_predictions_and_marks_the_target_buttons(window):
    window.input_panel.pick_example(15)
    assert "true label <b>5</b>" in window.input_panel.true_label.text()
    preds = start_prediction(window)
    text = window.input_panel.predictions_label.text()
    assert f"robust: <b>{preds[0]}</b>" in text and f"standard: <b>{preds[1]}</b>" in text
    assert window.target_picker.marked == sorted(set(preds))
    image = data.test_digits()[0][15] / np.float32(255)
    assert np.array_equal(window.view.columns[0].frame_item.image, image)


def test_drawn_strokes_are_what_the_models_get(qtbot, window):
    canvas = window.input_panel.canvas
    with qtbot.waitSignal(window.input_panel.start_changed, timeout=1000):
        draw_vertical_bar(qtbot, canvas)
    expected = drawing_to_mnist(canvas.ink())
    assert np.array_equal(window.input_panel.start_image, expected)
    assert expected[4:24, 12:16].mean() > 0.3  # a vertical bar in the middle
    assert set(window._start_probs) == {"robust", "standard"}
    assert play_to_end(qtbot, window) == "completed"
    assert np.array_equal(window.current_record()["start"]["image"], expected.tolist())


def test_play_to_the_end_one_point_per_step_and_flip_marker_where_probabilities_cross(qtbot, window):
    window.input_panel.pick_example(15)
    target = other_target(window)
    window.set_target(target)
    assert play_to_end(qtbot, window) == "completed"
    h = window.history
    assert len(h) == STEPS + 1 and list(h.steps) == list(range(STEPS + 1))
    for j, column in enumerate(window.view.columns):
        for c in range(10):
            x, y = column.class_curve(c)
            assert len(x) == STEPS + 1
            assert np.allclose(y, h.probs[:, j, c])
        assert len(column.l2_curve.getData()[0]) == STEPS + 1
        assert np.allclose(curve_y(column.l2_curve), h.l2[:, j])
        predicted = h.probs[:, j].argmax(-1)
        flips = np.flatnonzero(predicted == target)
        assert flips.size, "a 0.5-L2 step size must reach the target of an untrained net"
        assert column.flip_step == flips[0]
        k = flips[0]
        # At the marker the target's probability has just overtaken every other class.
        assert h.probs[k, j, target] == h.probs[k, j].max()
        assert h.probs[k - 1, j, target] < h.probs[k - 1, j].max()
        assert f"at step {k}" in column.flip_line.label.format
        # Target bold, start class dashed.
        assert column.target_curve.opts["pen"].width() == 4
        start = int(h.probs[0, j].argmax())
        assert column.start_curve.opts["pen"].style() == Qt.PenStyle.DashLine
        assert np.allclose(column.start_curve.getData()[1], h.probs[:, j, start])
    assert window.timeline.maximum() == STEPS and window.timeline.value() == STEPS
    assert window.status_step.text() == f"step {STEPS} / {STEPS}"


def test_pgd_mode_draws_the_eps_line_and_stays_in_the_ball(qtbot, window):
    window.input_panel.pick_example(3)
    window.settings.mode.setCurrentIndex(window.settings.mode.findData("pgd"))
    window.settings.eps.setValue(1.5)
    window.set_target(other_target(window))
    play_to_end(qtbot, window)
    for j, column in enumerate(window.view.columns):
        assert column.eps_line.isVisible() and column.eps_line.value() == pytest.approx(1.5)
        assert window.history.l2[:, j].max() <= 1.5 + 1e-4


def test_pause_step_and_reset(qtbot, window):
    window.input_panel.pick_example(15)
    window.settings.max_steps.setValue(10_000)
    window.settings.step_size.setValue(0.001)
    with qtbot.waitSignal(window.run_started, timeout=2000):
        window.toggle_play()
    qtbot.waitUntil(lambda: window.history is not None and len(window.history) > 5, timeout=5000)
    window.toggle_play()  # pause
    assert window.run_status == "paused"
    qtbot.wait(100)
    n = len(window.history)
    qtbot.wait(200)
    assert len(window.history) == n  # paused within one step: nothing more arrives
    for k in range(3):
        window.step_once()
        qtbot.waitUntil(lambda k=k: len(window.history) == n + k + 1, timeout=5000)
    qtbot.waitUntil(lambda: window.timeline.value() == n + 2, timeout=2000)
    assert window.history.steps[-1] == n + 2
    with qtbot.waitSignal(window.run_finished, timeout=2000) as blocker:
        window.reset()
    assert blocker.args == ["stopped"]
    assert window.history is None and window.run_status == "idle"
    assert window.timeline.maximum() == 0
    assert np.array_equal(window.view.columns[0].frame_item.image, window.input_panel.start_image)


def test_step_from_idle_starts_a_paused_run(qtbot, window):
    window.input_panel.pick_example(15)
    window.step_once()
    qtbot.waitUntil(lambda: window.history is not None and len(window.history) == 2, timeout=5000)
    assert window.run_status == "paused"
    qtbot.wait(100)
    assert len(window.history) == 2


def test_keyboard_space_right_r_and_digits(qtbot, window):
    window.input_panel.pick_example(15)
    window.settings.max_steps.setValue(10_000)
    window.settings.step_size.setValue(0.001)
    window.activateWindow()
    window.setFocus()
    qtbot.keyClick(window, Qt.Key.Key_7)
    assert window.target_picker.target == 7
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.history is not None and len(window.history) == 2, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.run_status == "playing"
    qtbot.waitUntil(lambda: len(window.history) > 4, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.run_status == "paused"
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert window.history is None and window.run_status == "idle"


def test_scrubbing_moves_frames_delta_maps_and_cursors(qtbot, window):
    window.input_panel.pick_example(15)
    window.set_target(other_target(window))
    play_to_end(qtbot, window)
    h, x0 = window.history, window.input_panel.start_image
    for k in (0, 7, STEPS // 2, STEPS):
        window.scrub_to(k)
        for j, column in enumerate(window.view.columns):
            assert np.array_equal(column.frame_item.image, h.images[k, j])
            assert np.allclose(column.delta_item.image, h.images[k, j] - x0)
            assert all(line.value() == k for line in column.cursors)
            assert f"step {k}:" in column.prediction.text
        assert window.timeline_label.text() == f"step {k} / {STEPS}"


def test_changing_target_while_running_stops_the_run_and_drops_its_frames(qtbot, window):
    window.input_panel.pick_example(15)
    window.settings.max_steps.setValue(10_000)
    window.settings.step_size.setValue(0.001)
    window.play()
    qtbot.waitUntil(lambda: window.history is not None and len(window.history) > 3, timeout=5000)
    old_threads = window.runs.threads()
    with qtbot.waitSignal(window.run_finished, timeout=2000) as blocker:
        window.set_target(4)
    assert blocker.args == ["stopped"]
    assert window.history is None
    # The old worker may still deliver a batch; it must never reach the views.
    qtbot.waitUntil(lambda: not any(t.isRunning() for t in old_threads), timeout=5000)
    qtbot.wait(50)
    assert window.history is None and window.timeline.maximum() == 0
    # Changing the start image also stops a run.
    window.play()
    qtbot.waitUntil(lambda: window.history is not None and len(window.history) > 1, timeout=5000)
    with qtbot.waitSignal(window.run_finished, timeout=2000):
        window.input_panel.pick_example(16)
    assert window.history is None


def test_closing_during_a_run_leaves_no_thread(qtbot, gui_models):
    w = MainWindow(models_folder=gui_models, device="cpu")
    w.show()
    w.input_panel.pick_example(15)
    w.settings.max_steps.setValue(10_000)
    w.settings.step_size.setValue(0.001)
    w.play()
    qtbot.waitUntil(lambda: w.history is not None and len(w.history) > 2, timeout=5000)
    threads = w.runs.threads()
    assert threads and threads[0].isRunning()
    w.close()
    assert not any(t.isRunning() for t in threads)
    assert not w.runs.threads()
    w.deleteLater()


def test_export_then_open_run_replays_the_identical_run(qtbot, window, tmp_path):
    window.input_panel.pick_example(15)
    window.settings.seed.setValue(3)
    window.settings.objective.setCurrentIndex(window.settings.objective.findData("margin"))
    target = other_target(window)
    window.set_target(target)
    play_to_end(qtbot, window)
    first = window.history.stacked()
    out = tmp_path / "export"
    with qtbot.waitSignal(window.export_finished, timeout=30_000):
        assert window.export_to(out)
    qtbot.waitUntil(lambda: not window.exporter.busy, timeout=5000)
    assert not window.exporter.progress.isVisible()
    record = read_run_record(out)
    assert record.test_index == 15 and record.target == target
    assert record.config == window.settings.config() and record.config.seed == 3
    assert [m.name for m in record.models] == ["robust", "standard"]
    rows = read_steps_csv(out / "steps.csv")
    assert len(rows) == (STEPS + 1) * 2
    assert (out / "traversal.gif").is_file()
    assert len(list((out / "frames" / "robust").glob("*.png"))) == STEPS + 1

    # A fresh window with other settings replays the run from its record alone.
    other = make_window(qtbot, window.models_folder)
    other.input_panel.pick_example(3)
    other.set_target((target + 3) % 10)
    other.settings.step_size.setValue(0.01)
    with qtbot.waitSignal(other.run_finished, timeout=20_000) as blocker:
        assert other.open_run_file(out / "run.json")
    assert blocker.args == ["completed"]
    again = other.history.stacked()
    for key in ("images", "probs", "l2", "linf", "objective", "step"):
        assert np.array_equal(again[key], first[key]), key
    assert other.target_picker.target == target and other.input_panel.test_index == 15
    assert other.settings.config() == record.config


def test_open_run_with_a_missing_model_or_a_bad_file_shows_a_dialog(qtbot, window, tmp_path):
    window.input_panel.pick_example(15)
    play_to_end(qtbot, window)
    record = window.current_record()
    record["models"][0]["sha256"] = "0" * 64
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.open_run_file(path)
    assert "not among the listed models" in window.last_error
    path.write_text("{oops")
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.open_run_file(path)
    assert "not JSON" in window.last_error
    assert isinstance(window.error_dialog, QMessageBox) and window.error_dialog.isVisible()


@pytest.mark.parametrize("content, words", [
    (b"\x80\x04\x95 pickle bytes", "pickle"),
    (b"garbage", "truncated"),
])
def test_a_bad_model_file_shows_an_error_dialog(qtbot, window, tmp_path, content, words):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.add_model_file(bad)
    assert words in window.last_error
    assert window.error_dialog.isVisible()
    assert len(window.selector.entries()) == 2


def test_adding_a_good_model_ticks_a_third_column_and_at_most_four_stay_ticked(qtbot, window, tmp_path):
    for i in range(3):
        torch.manual_seed(100 + i)
        save_model(SmallCNN(), tmp_path / f"extra{i}.safetensors", {"kind": "test"}, "small_cnn")
    assert window.add_model_file(tmp_path / "extra0.safetensors")
    assert [c.name for c in window.view.columns] == ["robust", "standard", "extra0"]
    assert window.add_model_file(tmp_path / "extra1.safetensors")
    assert window.add_model_file(tmp_path / "extra2.safetensors")
    assert len(window.view.columns) == 4 and len(window.selector.entries()) == 5
    item = window.selector.list.item(4)
    item.setCheckState(Qt.CheckState.Checked)  # a fifth is refused
    assert item.checkState() == Qt.CheckState.Unchecked and "At most 4" in window.selector.note.text()


def test_nan_from_a_model_shows_a_dialog_and_keeps_the_valid_frames(qtbot, tmp_path):
    model = SmallCNN()
    with torch.no_grad():
        model.classifier[-1].weight.fill_(3e38)  # finite weights, infinite logits
    save_model(model, tmp_path / "overflow.safetensors", {"kind": "test"}, "small_cnn")
    w = make_window(qtbot, tmp_path)
    w.input_panel.pick_example(15)
    with qtbot.waitSignal(w.run_finished, timeout=10_000) as blocker:
        w.play()
    assert blocker.args == ["failed"]
    assert "NaN or inf" in w.last_error and w.error_dialog.isVisible()


def test_play_with_an_empty_canvas_shows_a_dialog(qtbot, window):
    with qtbot.waitSignal(window.error_shown, timeout=2000):
        assert not window.play()
    assert "canvas is empty" in window.last_error
    assert window.history is None


def test_redraws_are_throttled_while_frames_arrive_fast(qtbot, window):
    window.input_panel.pick_example(15)
    window.settings.max_steps.setValue(300)
    window.settings.step_size.setValue(0.01)
    calls = []
    column = window.view.columns[0]
    original = column.set_curves
    column.set_curves = lambda *a: (calls.append(1), original(*a))
    import time
    t0 = time.perf_counter()
    play_to_end(qtbot, window, timeout=60_000)
    elapsed = time.perf_counter() - t0
    assert len(window.history) == 301
    # At most one redraw per 33 ms timer tick (plus the final one), far fewer than 301 frames.
    assert len(calls) <= elapsed / 0.033 + 3


def test_norm_plot_range_only_grows_in_round_steps(qtbot, window):
    from trav_gui.qt.plots import _nice_ceiling

    assert [_nice_ceiling(v) for v in (0.3, 1.0, 1.1, 2.2, 4.9, 7.0, 12.0)] == [0.5, 1, 2, 2.5, 5, 10, 20]
    window.input_panel.pick_example(15)
    play_to_end(qtbot, window)
    column = window.view.columns[0]
    top = column.norm_plot.viewRange()[1][1]
    highest = max(curve_y(column.l2_curve).max(), curve_y(column.linf_curve).max())
    assert highest <= top <= 2.6 * highest + 1.1  # everything visible, not absurdly zoomed out
    for col in window.view.columns:  # every plot of every column spans the run's steps
        for plot in (col.prob_plot, col.norm_plot):
            x0, x1 = plot.viewRange()[0]
            assert x0 <= 0 and STEPS <= x1 <= 1.1 * STEPS


def test_run_device_lists_the_machines_devices_and_a_choice_takes_effect_for_the_next_run(qtbot, gui_models,
                                                                                         monkeypatch):
    """A second device that works on any machine: "cpu:0" (a GPU is not there to test with)."""
    from trav_gui.qt import device_choice

    monkeypatch.setattr(device_choice, "available_devices", lambda: ["cpu", "cpu:0"])
    w = make_window(qtbot, gui_models)
    w.settings.max_steps.setValue(STEPS)
    assert list(w.device_actions) == ["cpu", "cpu:0"]
    assert w.device_actions["cpu"].isChecked() and not w.device_actions["cpu:0"].isChecked()
    w.input_panel.pick_example(15)
    assert play_to_end(qtbot, w) == "completed"
    old_models = w.models
    w.device_actions["cpu:0"].trigger()
    assert w.device == "cpu:0" and w.device_actions["cpu:0"].isChecked()
    assert w.models is not old_models and w.models.device == "cpu:0" and w.scorers.device == "cpu:0"
    assert w.history is None  # the run on screen was left
    assert w._start_probs  # the start was classified again, on the new device
    assert play_to_end(qtbot, w) == "completed"
    assert w.current_record()["extra"]["device"] == "cpu:0"
