"""The Python API (trav_gui.traverse, trav_gui.show) and the window's File → Add model…."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

import trav_gui
from trav_gui.engine.core.traversal import DEFAULTS, NonFiniteOutputError, TraversalConfig, stack_frames, traverse
from trav_gui.engine.data.datasets import test_set as shipped_test_set
from trav_gui.engine.models.weights import state_sha256

from helpers import NanAfter, make_window, save_with_card


def plain_model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def digit(index=0) -> np.ndarray:
    return shipped_test_set("mnist")[0][index].astype(np.float32) / 255.0


def test_import_trav_gui_loads_neither_torch_nor_qt():
    code = ("import sys, trav_gui; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'PySide6', 'numpy')), callable(trav_gui.traverse))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_traverse_a_plain_sequential_with_the_apps_engine():
    model = plain_model()
    result = trav_gui.traverse(model, digit(), target=3, steps=30, step_size=0.5, realism=False)
    assert result.frames.shape == (31, 28, 28) and result.frames.dtype == np.float32
    assert result.probs.shape == (31, 10) and result.l2.shape == (31,) and result.linf.shape == (31,)
    assert list(result.steps) == list(range(31)) and result.judge_probs is None and result.nn_ratio is None
    engine = stack_frames(list(traverse([model], digit(), 3, TraversalConfig(steps=30, step_size=0.5))))
    np.testing.assert_array_equal(result.frames, engine["images"][:, 0, 0])
    np.testing.assert_array_equal(result.probs, engine["probs"][:, 0, 0])
    assert result.probs[-1, 3] > result.probs[0, 3] and result.l2[0] == 0
    assert result.flip_step is None or result.predictions[result.flip_step] == 3


def test_the_image_may_be_numpy_or_torch_2d_3d_or_uint8_and_the_target_a_numpy_label():
    model = plain_model()
    want = trav_gui.traverse(model, digit(), 3, steps=3, realism=False).frames
    raw = shipped_test_set("mnist")[0][0]
    for image in (torch.from_numpy(digit())[None], digit()[None], raw, torch.from_numpy(digit())[None, None]):
        np.testing.assert_array_equal(trav_gui.traverse(model, image, 3, steps=3, realism=False).frames, want)
    np.testing.assert_array_equal(trav_gui.traverse(model, raw, np.uint8(3), steps=3, realism=False).frames, want)


def test_a_colour_world_takes_and_returns_c_h_w_images_with_every_channel_moving():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 784, 32), nn.ReLU(), nn.Linear(32, 10))
    rgb = shipped_test_set("colored-mnist")[0][0]
    result = trav_gui.traverse(model, rgb, 3, steps=20, step_size=0.5, dataset="colored-mnist", realism=False)
    assert result.frames.shape == (21, 3, 28, 28) and result.dataset == "colored-mnist"
    np.testing.assert_array_equal(result.frames[0], rgb / np.float32(255))
    delta = result.frames[-1] - result.frames[0]
    # The step is one L2 step over all channels: ||delta||_2 over (3, 28, 28) is what l2 reports.
    assert result.l2[-1] == pytest.approx(float(np.linalg.norm(delta)), rel=1e-4)
    assert all(np.abs(delta[c]).sum() > 0 for c in range(3))
    np.testing.assert_array_equal(
        trav_gui.traverse(model, torch.from_numpy(rgb.copy())[None], 3, steps=20, step_size=0.5, dataset="colored-mnist",
                          realism=False).frames, result.frames)
    with pytest.raises(ValueError, match=r"image must be \(3, 28, 28\) or \(1, 3, 28, 28\) for Colored-MNIST"):
        trav_gui.traverse(model, digit(), 3, dataset="colored-mnist")
    with pytest.raises(ValueError, match=r"must map \(N, 3, 28, 28\) images .* to \(N, 10\)"):
        trav_gui.traverse(plain_model(), rgb, 3, dataset="colored-mnist")


def test_the_defaults_are_the_apps():
    params = inspect.signature(trav_gui.traverse).parameters
    for name in ("steps", "step_size", "norm", "eps", "objective", "random_start", "stop_at_prob", "seed"):
        assert params[name].default == getattr(DEFAULTS, name), name


def test_settings_reach_the_engine_and_the_models_mode_is_restored():
    model = plain_model().train()
    result = trav_gui.traverse(model, digit(), 3, steps=50, step_size=0.3, eps=1.0, norm="l2", stop_at_prob=0.6,
                               realism=False)
    assert model.training
    assert result.config == TraversalConfig(steps=50, step_size=0.3, eps=1.0, stop_at_prob=0.6)
    assert result.l2.max() <= 1.0 + 1e-4


@pytest.mark.parametrize("kwargs, words", [
    (dict(image=np.zeros((2, 28, 28))), r"image must be \(28, 28\)"),
    (dict(image=np.full((28, 28), 2.0)), r"pixels must lie in \[0, 1\]"),
    (dict(target=10), "target must be an int in 0..9"),
    (dict(target=True), "target must be an int in 0..9"),
    (dict(step_size=0), "step size must be > 0"),
    (dict(model=nn.Sequential(nn.Flatten(), nn.Linear(784, 5))), r"must map .* to \(N, 10\).* returned \(1, 5\)"),
])
def test_bad_input_is_a_clear_value_error(kwargs, words):
    args = {**dict(model=plain_model(), image=digit(), target=3), **kwargs}
    with pytest.raises(ValueError, match=words):
        trav_gui.traverse(**args, steps=2)
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        trav_gui.traverse(object(), digit(), 3)


def test_a_model_returning_nan_raises_with_the_frames_before_it():
    with pytest.raises(NonFiniteOutputError) as err:
        trav_gui.traverse(NanAfter(plain_model(), good_calls=6), digit(), 3, steps=20, realism=False)
    assert err.value.step == 5 and err.value.result.frames.shape == (5, 28, 28)


def test_the_realism_hook_fills_fields_only_from_a_judge(monkeypatch):
    from trav_gui import api

    calls = []

    class FakeScorer:  # stands for trav_gui.engine.realism.RealismScorer
        def __init__(self, dataset, device):
            calls.append(dataset)

        def score(self, frames, target, start=None):
            return types.SimpleNamespace(judge_probs=np.full((len(frames), 10), 0.1), nn_ratio=np.ones(len(frames)),
                                         colour_kept=None, grey_share=None)

    monkeypatch.setitem(sys.modules, "trav_gui.engine.realism", types.SimpleNamespace(RealismScorer=FakeScorer))
    result = trav_gui.traverse(plain_model(), digit(), 3, steps=4, dataset="fashion-mnist")
    assert calls == ["fashion-mnist"] and result.judge_probs.shape == (5, 10) and result.nn_ratio.shape == (5,)
    monkeypatch.setitem(sys.modules, "trav_gui.engine.realism", None)  # no realism module: no fields
    assert api._realism(result.frames, 3, "mnist", "cpu") is None
    assert trav_gui.traverse(plain_model(), digit(), 3, steps=4).judge_probs is None


# ----------------------------------------------------------------------------- the app


def test_show_opens_the_app_on_in_memory_models(qtbot):
    mine, yours = plain_model(1), plain_model(2)
    window = trav_gui.show(models={"mine": mine, "yours": yours}, image=digit(7), target=3, block=False)
    qtbot.addWidget(window)
    cards = window.selector.selected_entries()
    assert [c.name for c in cards] == ["mine", "yours"]
    assert cards[0].path is None and cards[0].key == "memory:mine" and cards[0].card.sha256 == state_sha256(mine)
    assert cards[0].card.evaluation.clean_samples == 10_000
    assert window.target_picker.target == 3 and window.device == "cpu"
    np.testing.assert_array_equal(window.input_panel.start_image, digit(7))
    window.settings.max_steps.setValue(5)
    with qtbot.waitSignal(window.run_finished, timeout=20_000):
        assert window.play()
    record = window.current_record()
    assert [(m["name"], m["sha256"]) for m in record["models"]] == [("mine", state_sha256(mine)),
                                                                     ("yours", state_sha256(yours))]
    window.close()


def test_show_refuses_names_of_listed_models_and_blocks_only_without_an_event_loop(qtbot, monkeypatch):
    from PySide6.QtWidgets import QApplication

    from trav_gui.qt.show import event_loop_running

    with pytest.raises(ValueError, match="'robust' is already the name of a listed model"):
        trav_gui.show(models={"robust": plain_model()}, block=False)
    app = QApplication.instance()
    assert not event_loop_running(app)
    shell = types.SimpleNamespace(active_eventloop="qt")
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert event_loop_running(app)  # a notebook after %gui qt


LENET_CARD = {"architecture": "lenet5", "dataset": "mnist", "input": {"layout": "image", "range": [0, 1]},
              "output": "logits"}


def test_add_model_keeps_the_model_and_the_next_start_lists_it(qtbot, gui_models, trained_lenet, tmp_path,
                                                               user_models):
    window = make_window(qtbot, gui_models)
    assert window.add_model_file(save_with_card(trained_lenet, tmp_path / "lenet.safetensors", LENET_CARD))
    assert [c.name for c in window.selector.selected_entries()] == ["robust", "standard", "lenet"]
    assert "lenet — clean 9" in window.selector.list.item(2).text()
    assert (user_models / "lenet.safetensors").is_file()
    window.close()
    again = make_window(qtbot, gui_models)  # a restart
    assert [c.name for c in again.selector.entries()] == ["robust", "standard", "lenet"]
    assert again.selector.entries()[2].path == user_models / "lenet.safetensors"


def test_add_model_refuses_a_pickle_with_a_dialog_and_keeps_nothing(qtbot, gui_models, tmp_path, user_models):
    window = make_window(qtbot, gui_models)
    bad = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    with qtbot.waitSignal(window.error_shown, timeout=5000):
        assert not window.add_model_file(bad)
    assert "torch.onnx.export" in window.last_error and len(window.selector.entries()) == 2
    assert not any(user_models.iterdir())
