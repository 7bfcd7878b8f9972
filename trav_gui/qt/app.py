"""Start the desktop app: ``python main.py`` or ``trav-gui gui``."""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType

__all__ = ["configure_torch_threads", "main"]

# The digit the app opens with: MNIST test digit 15, a 5, with target 0 preselected, the
# product's canonical demo (press Space to watch it turn into a 0, or not).
FIRST_EXAMPLE = 15


def configure_torch_threads() -> None:
    """Leave one core to the GUI thread.

    One traversal step on one image is too small to gain from many threads; a core kept
    free for drawing keeps the window smooth and makes the run faster overall.
    """
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def _install_excepthook(window) -> None:
    """Show unexpected errors in a dialog instead of a traceback in the terminal."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        details = "".join(traceback.format_exception(kind, exc, tb))
        try:
            window.show_error("Unexpected error",
                              f"{kind.__name__}: {exc}\n\nThe window keeps running; "
                              "details are in the dialog's text below.\n\n" + details[-2000:])
        except Exception:  # noqa: BLE001 - the window itself may be gone
            sys.__excepthook__(kind, exc, tb)

    sys.excepthook = hook


def main(argv: list[str] | None = None) -> int:
    """Create the QApplication and the main window, and run the event loop.

    Parameters
    ----------
    argv : Qt command-line arguments (``sys.argv`` when None).

    Returns
    -------
    int : the event loop's exit code.
    """
    from PySide6.QtWidgets import QApplication

    configure_torch_threads()

    argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("trav-gui")
    app.setOrganizationName("trav-gui")

    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, foreground="#dddddd")
    from trav_gui.qt.window import MainWindow

    window = MainWindow()
    window.input_panel.pick_example(FIRST_EXAMPLE)  # a no-op if the digits are missing
    _install_excepthook(window)
    window.show()
    try:
        return app.exec()
    finally:
        sys.excepthook = sys.__excepthook__
