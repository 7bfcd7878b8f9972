"""How many CPU threads torch uses: shared by the app and its benchmarks (Qt-free)."""

from __future__ import annotations

import os

import torch

__all__ = ["configure_torch_threads"]


def configure_torch_threads() -> None:
    """Leave one core to the GUI thread.

    One traversal step on one image is too small to gain from many threads; a core kept
    free for drawing keeps the window smooth and makes the run faster overall.
    """
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
