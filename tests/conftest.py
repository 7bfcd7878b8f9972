"""Shared fixtures: tiny models with known gradients, and a folder of small saved models."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

from trav_gui.engine.models.architectures import SmallCNN
from trav_gui.engine.models.weights import save_model

# Headless machines (CI, ssh) have no display: run Qt offscreen unless the caller chose.
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Windows compute their runs in a thread here, as they did before the compute process: a
# process per test window would add a torch import per test. tests/test_compute_process.py
# runs the app's default, the compute process, on purpose.
os.environ.setdefault("TRAV_GUI_COMPUTE", "thread")


class LinearModel(nn.Module):
    """logits = W x + b: the gradient of class c's logit is W[c], exactly."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(10, 784, generator=g) * 0.05, requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(10), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.fixture(autouse=True)
def user_models(tmp_path_factory, monkeypatch):
    """An empty user models folder per test: no test reads or fills the real one (~/.local/share)."""
    folder = tmp_path_factory.mktemp("user_models")
    monkeypatch.setenv("TRAV_GUI_USER_MODELS", str(folder))
    return folder


@pytest.fixture(autouse=True)
def user_datasets(tmp_path_factory, monkeypatch):
    """A user data sets folder per test, not made yet: no test reads or fills the real one."""
    folder = tmp_path_factory.mktemp("user_datasets") / "datasets"
    monkeypatch.setenv("TRAV_GUI_USER_DATASETS", str(folder))
    return folder


@pytest.fixture
def linear_model():
    return LinearModel(seed=0).eval()


@pytest.fixture
def two_models():
    return [LinearModel(seed=1).eval(), LinearModel(seed=2).eval()]


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module of small-batch work (much faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_lenet():
    """A LeNet-5 trained for 300 steps on the shipped MNIST test images (about 95 % right on them)."""
    from helpers import train_lenet

    return train_lenet()


@pytest.fixture
def model_folder(tmp_path):
    """A folder with two untrained SmallCNN models, ``a`` and ``b``, each with a card."""
    for i, name in enumerate(["a", "b"]):
        torch.manual_seed(i)
        save_model(SmallCNN(), tmp_path / f"{name}.safetensors",
                   {"kind": "test", "evaluation": {"clean_accuracy": 0.1, "robust": []}}, "small_cnn")
    return tmp_path


# --------------------------------------------------------------------------- Qt tests


def _running_qthreads() -> list:
    """Every QThread object alive in Python that is still running (not the main thread)."""
    import gc
    import sys
    import warnings

    if "PySide6.QtCore" not in sys.modules:
        return []
    from PySide6.QtCore import QCoreApplication, QThread

    app = QCoreApplication.instance()
    main = app.thread() if app is not None else None
    with warnings.catch_warnings():
        # isinstance() on every live object touches deprecated torch aliases.
        warnings.simplefilter("ignore")
        return [t for t in gc.get_objects()
                if isinstance(t, QThread) and t is not main and t.isRunning()]


@pytest.fixture(autouse=True)
def no_running_qthread():
    """Fail any test that leaves a QThread running (and stop it, so the next test is clean)."""
    yield
    leaked = _running_qthreads()
    if not leaked:
        return
    names = [t.objectName() or repr(t) for t in leaked]
    for t in leaked:
        t.quit()
        t.wait(5000)
    pytest.fail(f"test left {len(leaked)} QThread(s) running: {names}")


@pytest.fixture
def gui_models(tmp_path):
    """A models folder with two small untrained CNNs named ``robust`` and ``standard``.

    The window ticks these two names by default, as it does for the shipped models; the
    weights are random, so tests never depend on the trained ones.
    """
    folder = tmp_path / "models"
    for i, name in enumerate(["robust", "standard"]):
        torch.manual_seed(10 + i)
        save_model(SmallCNN(), folder / f"{name}.safetensors",
                   {"kind": name, "evaluation": {"clean_accuracy": 0.5 + i / 10,
                                                  "robust": [{"eps": 2.0, "attack": "l2-pgd",
                                                              "accuracy": 0.3 - i / 10}]}},
                   "small_cnn")
    return folder
