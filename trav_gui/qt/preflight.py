"""Before Qt starts: is there a display, and does Qt's X11 plugin have its system libraries?

Without a display, or without a library that Qt's ``xcb`` platform plugin needs (a minimal
Linux often lacks ``libxcb-cursor0``), creating the ``QApplication`` prints "could not load
the Qt platform plugin" and aborts the process with a core dump. :func:`check_display` sees
both cases beforehand, so the app can print one line saying what to do and exit with
status 1 instead. This module imports no Qt: it runs, and is tested, before Qt is loaded.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["APT_COMMAND", "XCB_LIBRARIES", "can_load", "check_display", "with_platform_argument"]

# The README's command for the libraries a minimal Linux desktop lacks most often.
APT_COMMAND = "apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libegl1"

# Shared libraries that Qt's xcb plugin loads, each with its Debian/Ubuntu package. The first
# five are those of APT_COMMAND; the others are on nearly every desktop, but a container or a
# server image may lack them too.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libEGL.so.1": "libegl1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
}

NO_DISPLAY_HINT = ("run it on a desktop, or under a virtual display (Xvfb :99 & DISPLAY=:99 python main.py), "
                   "or set QT_QPA_PLATFORM=offscreen for scripts")


def _bundled_qt_lib_dirs() -> list[Path]:
    """PySide6's own ``Qt/lib`` folders, found without importing PySide6."""
    spec = importlib.util.find_spec("PySide6")
    return [Path(p) / "Qt" / "lib" for p in (spec.submodule_search_locations or [])] if spec else []


def can_load(soname: str) -> bool:
    """Whether the shared library ``soname`` (e.g. ``"libxcb-cursor.so.0"``) can be loaded,
    by the system's loader or from PySide6's own Qt libraries."""
    if any((d / soname).is_file() for d in _bundled_qt_lib_dirs()):
        return True
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def with_platform_argument(environ: Mapping[str, str], argv: Sequence[str]) -> dict[str, str]:
    """``environ`` with ``QT_QPA_PLATFORM`` set to the value of a ``-platform NAME`` (or
    ``--platform NAME``) argument in ``argv``, which Qt prefers to the environment."""
    env = dict(environ)
    args = list(argv)
    for i, arg in enumerate(args[1:-1], start=1):
        if arg in ("-platform", "--platform"):
            env["QT_QPA_PLATFORM"] = args[i + 1]
    return env


def check_display(environ: Mapping[str, str], platform: str = sys.platform,
                  find_library: Callable[[str], bool] = can_load) -> str | None:
    """What keeps Qt from opening a window here, as one line for stderr; None when nothing does.

    Only Linux's X11 platform (``xcb``, Qt's default there) is checked: on Linux with
    ``QT_QPA_PLATFORM`` unset or ``xcb``, it needs a display (``DISPLAY``, or
    ``WAYLAND_DISPLAY`` when the platform is left to Qt, which then may choose Wayland) and the
    libraries of :data:`XCB_LIBRARIES`. Any other platform (``offscreen``, ``wayland``, a
    list such as ``wayland;xcb``, Windows, macOS) is left to Qt.

    Parameters
    ----------
    environ : the environment Qt will see (``QT_QPA_PLATFORM``, ``DISPLAY``, ``WAYLAND_DISPLAY``).
    platform : ``sys.platform``.
    find_library : ``soname -> bool``, whether a shared library can be loaded.
    """
    if not platform.startswith("linux"):
        return None
    requested = (environ.get("QT_QPA_PLATFORM") or "").strip()
    names = [part.split(":", 1)[0].strip().lower() for part in requested.split(";") if part.strip()]
    if any(name != "xcb" for name in names):
        return None
    has_x = bool(environ.get("DISPLAY"))
    if names:  # xcb asked for: Wayland cannot stand in
        if not has_x:
            return f"trav-gui: no display: QT_QPA_PLATFORM=xcb needs an X display and DISPLAY is not set; {NO_DISPLAY_HINT}"
    elif environ.get("WAYLAND_DISPLAY"):
        return None  # Qt may choose its Wayland plugin, whose needs are not checked here
    elif not has_x:
        return f"trav-gui: no display (neither DISPLAY nor WAYLAND_DISPLAY is set); {NO_DISPLAY_HINT}"
    missing = [soname for soname in XCB_LIBRARIES if not find_library(soname)]
    if not missing:
        return None
    command = APT_COMMAND.split()
    command += [XCB_LIBRARIES[s] for s in missing if XCB_LIBRARIES[s] not in command]
    return (f"trav-gui: Qt's X11 platform plugin (xcb) cannot start: missing system "
            f"{'library' if len(missing) == 1 else 'libraries'} {', '.join(missing)}; "
            f"on Debian/Ubuntu: {' '.join(command)} (see README.md)")
