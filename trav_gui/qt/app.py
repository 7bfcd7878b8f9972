"""Start the desktop app: ``python main.py`` or ``trav-gui gui``."""

from __future__ import annotations

import os
import sys
import traceback
from types import TracebackType

from trav_gui.engine.core.threads import configure_torch_threads
from trav_gui.qt.preflight import check_display, with_platform_argument

__all__ = ["FIRST_EXAMPLE", "main"]

# The digit the app opens with: MNIST test digit 15, a 5, with target 0 preselected, the
# product's canonical demo (press Space to watch it turn into a 0, or not).
FIRST_EXAMPLE = 15


def _qt_application_exists() -> bool:
    """Whether this process already has a Qt application (tests, benchmarks), without
    importing Qt when it has none."""
    core = sys.modules.get("PySide6.QtCore")
    return core is not None and core.QCoreApplication.instance() is not None


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
    int : the event loop's exit code; 1, with one line on stderr, when Qt could not open
    a window here (no display, or missing system libraries: see :mod:`trav_gui.qt.preflight`).
    """
    argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
    if not _qt_application_exists():
        # Qt aborts the process (a core dump) when its platform plugin cannot start; say why first.
        problem = check_display(with_platform_argument(os.environ, argv))
        if problem:
            print(problem, file=sys.stderr)
            return 1

    from PySide6.QtWidgets import QApplication

    configure_torch_threads()

    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("trav-gui")
    app.setOrganizationName("trav-gui")

    from trav_gui.qt.plots import configure_pyqtgraph
    from trav_gui.qt.window import MainWindow

    configure_pyqtgraph()

    window = MainWindow()
    window.input_panel.pick_example(FIRST_EXAMPLE)  # a no-op if the digits are missing
    _install_excepthook(window)
    window.show()
    try:
        return app.exec()
    finally:
        sys.excepthook = sys.__excepthook__
