"""Helpers shared by several test files: a window factory, a model that turns to NaN, test images,
and a model saved as a user saves one."""

from __future__ import annotations

import torch


class NanAfter(torch.nn.Module):
    """The wrapped model, until ``good_calls`` forward passes; NaN logits after that."""

    def __init__(self, inner, good_calls):
        super().__init__()
        self.inner, self.calls, self.good = inner, 0, good_calls

    def forward(self, x):
        self.calls += 1
        out = self.inner(x)
        return out * float("nan") if self.calls > self.good else out


def make_window(qtbot, folder, **kw):
    """A shown MainWindow on the models in ``folder``, on the CPU, closed by qtbot."""
    from trav_gui.qt.window import MainWindow

    w = MainWindow(models_folder=folder, device="cpu", **kw)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def mnist_images(n: int):
    """The first ``n`` shipped MNIST test images as (n, 1, 28, 28) float32 in [0, 1], and their labels."""
    import numpy as np

    from trav_gui.engine.data.datasets import test_set

    images, labels = test_set("mnist")
    return torch.from_numpy(images[:n].astype(np.float32) / 255.0)[:, None], labels[:n]


def save_with_card(model, path, card=None):
    """What a user does: ``save_file(model.state_dict(), path)``, and a card beside it (unless None)."""
    import json

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card))
    return path


def draw_vertical_bar(qtbot, canvas) -> None:
    """Drag the mouse down the middle of ``canvas``, from 1/8 to 7/8 of its height: one stroke."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    s = canvas.width()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(s // 2, s // 8))
    for y in range(s // 8, 7 * s // 8, 8):
        QApplication.sendEvent(canvas, QMouseEvent(
            QMouseEvent.Type.MouseMove, QPoint(s // 2, y), canvas.mapToGlobal(QPoint(s // 2, y)),
            Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(s // 2, 7 * s // 8))


def train_lenet(mean: float = 0.0, std: float = 1.0, seed: int = 0):
    """A LeNet-5 trained for 300 steps on the shipped MNIST test images, seen as (x - mean) / std
    (about 95 % right on them), in eval mode with its parameters frozen."""
    import numpy as np

    from trav_gui.engine.data.datasets import test_set
    from trav_gui.engine.models.architectures import LeNet5

    images, labels = test_set("mnist")
    x = (torch.from_numpy(images.astype(np.float32) / 255.0)[:, None] - mean) / std
    y = torch.from_numpy(labels.astype(np.int64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is the fastest on a busy machine
    torch.manual_seed(seed)
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(300):
        i = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval().requires_grad_(False)


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py``, loaded as its script is run: its folder first on the
    path while it loads, so that it finds the scripts beside it (it is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


_RELAYS: list = []  # the relays live as long as the test session: a signal may still be queued to one


def in_gui_thread(signal, *types):
    """``signal`` (emitted in a worker's thread), re-emitted in the GUI thread: what ``qtbot.waitSignal``
    may wait for.

    pytest-qt connects a plain callable, which PySide calls in the thread that emits: a worker's own
    signal then quits the wait's event loop and stops its timeout timer from the worker's thread. Where
    the GUI thread is between its last check and ``exec()`` at that moment, the quit is lost and the
    timer, stopped from the wrong thread, never fires: the test waits for ever (seen in CI, and 1 run in
    8-18 of a worker test under load). A relay, a QObject in the GUI thread, gets the signal queued.
    ``types`` are the signal's argument types, for ``blocker.args``.
    """
    from PySide6.QtCore import QObject, Signal

    relay = type("Relay", (QObject,), {"fired": Signal(*types)})()
    signal.connect(relay.fired)  # the relay lives in the GUI thread: the connection is queued
    _RELAYS.append(relay)
    return relay.fired
