"""``trav_gui.show``: the app on in-memory models, from a script (blocking) or a notebook (not)."""

from __future__ import annotations

import os
import sys
from typing import Mapping

import numpy as np
from torch import nn

from trav_gui.engine.data.datasets import DEFAULT_DATASET
from trav_gui.engine.models.loading import list_models
from trav_gui.engine.models.user_models import list_user_models
from trav_gui.paths import models_dir

__all__ = ["event_loop_running", "show_models"]

# Windows opened without blocking stay referenced here, so that they are not collected while shown.
_OPEN_WINDOWS: list = []


def event_loop_running(app) -> bool:
    """Whether Qt events are already being processed: inside ``exec()``, or IPython's ``%gui qt``."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    loop = str(getattr(shell, "active_eventloop", "") or "")
    return loop.startswith(("qt", "pyside")) or app.thread().loopLevel() > 0


def _application():
    """The running QApplication, or a new one after the display check of ``trav-gui gui``."""
    core = sys.modules.get("PySide6.QtCore")
    if core is None or core.QCoreApplication.instance() is None:
        from trav_gui.qt.preflight import check_display, with_platform_argument

        problem = check_display(with_platform_argument(os.environ, [sys.argv[0] if sys.argv else "python"]))
        if problem:
            raise RuntimeError(problem)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        from trav_gui.engine.core.threads import configure_torch_threads

        configure_torch_threads()
        app = QApplication([sys.argv[0] if sys.argv else "trav-gui"])
        app.setApplicationName("trav-gui")
        app.setOrganizationName("trav-gui")
    return app


def _device_of(models: Mapping[str, nn.Module]) -> str | None:
    firsts = (next(iter(m.parameters()), None) for m in models.values())
    devices = {str(p.device) for p in firsts if p is not None}
    if len(devices) > 1:
        raise ValueError(f"the models are on different devices ({', '.join(sorted(devices))}); put them on one")
    return devices.pop() if devices else None


def show_models(models: Mapping[str, nn.Module], image: np.ndarray | None = None, target: int | None = None,
                dataset: str = DEFAULT_DATASET, block: bool | None = None):
    """Open a MainWindow with ``models`` listed and ticked; see :func:`trav_gui.api.show`."""
    taken = {e.name for e in list_models(models_dir())} | {e.name for e in list_user_models()}
    clash = sorted(set(models) & taken)
    if clash:
        raise ValueError(f"{', '.join(map(repr, clash))} {'is' if len(clash) == 1 else 'are'} already the name of "
                         "a listed model; give your model another name")
    device = _device_of(models)
    app = _application()
    from trav_gui.qt.add_model import add_memory_models
    from trav_gui.qt.app import FIRST_EXAMPLE
    from trav_gui.qt.plots import configure_pyqtgraph
    from trav_gui.qt.window import MainWindow

    configure_pyqtgraph()
    window = MainWindow(device=device)
    if dataset != window.dataset:
        window.set_dataset(dataset)
    add_memory_models(models, window.dataset, window.models, window.selector, window.device)
    if image is not None:
        window.input_panel.set_start_image(image, None)
    else:
        window.input_panel.pick_example(FIRST_EXAMPLE)
    if target is not None:
        window.set_target(target)
    window.show()
    if block if block is not None else not event_loop_running(app):
        app.exec()
    else:
        _OPEN_WINDOWS.append(window)
    return window
