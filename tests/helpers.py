"""Helpers shared by several test files: a window factory and a model that turns to NaN."""

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
