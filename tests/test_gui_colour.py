"""The app in a colour world (Colored-MNIST): colour frames, per-channel δ, a brush colour, exports."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtGui import QColor

from trav_gui.engine.data.datasets import test_set as shipped_test_set
from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.weights import save_model
from trav_gui.engine.runs.record import read_run_record
from trav_gui.qt.plot_items import delta_rgb

from helpers import draw_vertical_bar, make_window


@pytest.fixture
def colour_folder(tmp_path):
    """Two untrained colour SmallCNNs named as the window's defaults for Colored-MNIST, and a grey pair."""
    folder = tmp_path / "models"
    for i, name in enumerate(["colored-robust", "colored-standard"]):
        torch.manual_seed(i)
        save_model(SmallCNN((3, 28, 28)), folder / f"{name}.safetensors",
                   {"kind": "test", "dataset": "colored-mnist"}, "small_cnn")
    for i, name in enumerate(["robust", "standard"]):
        torch.manual_seed(10 + i)
        save_model(SmallCNN(), folder / f"{name}.safetensors", {"kind": "test"}, "small_cnn")
    return folder


def test_a_colour_world_runs_shows_colour_and_exports_colour_files(qtbot, colour_folder, tmp_path):
    window = make_window(qtbot, colour_folder)
    assert window.set_dataset("colored-mnist")
    assert [e.name for e in window.selector.selected_entries()] == ["colored-robust", "colored-standard"]
    rgb, _ = shipped_test_set("colored-mnist")
    panel = window.input_panel
    assert panel.start_image.shape == (3, 28, 28)
    np.testing.assert_array_equal(panel.start_image, rgb[0] / np.float32(255))
    assert panel.colour_button.isVisibleTo(panel) and panel.canvas.colour_mode
    window.set_target(3)
    window.settings.max_steps.setValue(4)
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.play()
    h = window.history
    assert h.images.shape == (5, 2, 3, 28, 28) and h.probs.shape == (5, 2, 10)
    column = window.view.columns[0]
    # The frame is shown in colour (H, W, 3), δ around mid-grey per channel.
    frame = column.frame_item.image
    assert frame.shape == (28, 28, 3)
    np.testing.assert_allclose(frame, np.transpose(h.images[-1, 0], (1, 2, 0)))
    delta = h.images[-1, 0] - h.images[0, 0]
    np.testing.assert_allclose(column.delta_item.image, delta_rgb(delta, column.delta_level))
    assert "per channel" in column.delta_caption.text
    folder = tmp_path / "export"
    with qtbot.waitSignal(window.export_finished, timeout=60_000):
        assert window.export_to(folder)
    with np.load(folder / "colored-robust.npz") as f:
        assert f["frames"].shape == (5, 3, 28, 28) and f["probs"].shape == (5, 10)
        np.testing.assert_array_equal(f["frames"], h.images[:, 0])
    png = np.asarray(Image.open(folder / "frames" / "colored-robust" / "step_00004.png"))
    assert png.shape == (28, 28, 3)
    np.testing.assert_array_equal(png, np.round(np.transpose(h.images[4, 0], (1, 2, 0)) * 255).astype(np.uint8))
    record = read_run_record(folder / "run.json")
    assert record.start_image.shape == (3, 28, 28) and record.raw["extra"]["dataset"] == "colored-mnist"
    # Replaying the colour run gives the identical frames.
    assert window.open_run_file(folder / "run.json", play=False)
    with qtbot.waitSignal(window.run_finished, timeout=30_000):
        window.play()
    np.testing.assert_array_equal(window.history.images, h.images)


def test_drawing_in_a_colour_world_takes_the_brush_colour(qtbot, colour_folder):
    window = make_window(qtbot, colour_folder)
    assert window.set_dataset("colored-mnist")
    panel = window.input_panel
    panel.canvas.clear()
    panel.set_brush_colour(QColor(0, 255, 0))
    with qtbot.waitSignal(panel.start_changed, timeout=2000):
        draw_vertical_bar(qtbot, panel.canvas)
    image = panel.start_image
    assert image.shape == (3, 28, 28)
    # A green bar in the middle: ink in the green channel only.
    assert image[1, 4:24, 12:16].mean() > 0.3 and image[0].max() < 0.05 and image[2].max() < 0.05
    # Back to MNIST: the canvas is grey again, the start a (28, 28) digit.
    assert window.set_dataset("mnist")
    assert not panel.canvas.colour_mode and panel.start_image.shape == (28, 28)
    assert not panel.colour_button.isVisibleTo(panel)
