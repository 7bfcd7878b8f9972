"""Without a display or Qt's X libraries the app says so in one line and exits 1, no core dump."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trav_gui.qt import app as trav_app
from trav_gui.qt.preflight import APT_COMMAND, XCB_LIBRARIES, can_load, check_display, with_platform_argument

ROOT = Path(__file__).resolve().parents[1]


def all_there(soname: str) -> bool:
    return True


def lacking(*missing: str):
    return lambda soname: soname not in missing


def never_asked(soname: str) -> bool:
    raise AssertionError(f"libraries are not checked here (asked for {soname})")


def test_no_display_is_one_line_with_the_fixes():
    message = check_display({}, "linux", all_there)
    assert message is not None and "\n" not in message
    assert "no display" in message and "DISPLAY" in message
    assert "Xvfb" in message and "QT_QPA_PLATFORM=offscreen" in message


def test_xcb_asked_for_needs_an_x_display_even_under_wayland():
    message = check_display({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"}, "linux", all_there)
    assert message is not None and "no display" in message and "DISPLAY is not set" in message
    assert check_display({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, "linux", all_there) is None


def test_missing_libraries_are_named_with_the_readme_apt_command():
    message = check_display({"DISPLAY": ":0"}, "linux", lacking("libxcb-cursor.so.0", "libEGL.so.1"))
    assert message is not None and "\n" not in message
    assert "libxcb-cursor.so.0" in message and "libEGL.so.1" in message
    assert "libxcb-icccm.so.4" not in message
    assert APT_COMMAND in message
    assert APT_COMMAND in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_five_readme_libraries_are_checked_and_others_add_their_package():
    assert {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
            "libEGL.so.1"} <= set(XCB_LIBRARIES)
    message = check_display({"DISPLAY": ":0"}, "linux", lacking("libxcb-randr.so.0"))
    assert message is not None and "libxcb-randr.so.0" in message
    assert message.removesuffix(" (see README.md)").endswith(f"{APT_COMMAND} libxcb-randr0")


def test_all_fine_is_none():
    assert check_display({"DISPLAY": ":0"}, "linux", all_there) is None
    assert check_display({"DISPLAY": ":1", "QT_QPA_PLATFORM": "xcb:nograb"}, "linux", all_there) is None


@pytest.mark.parametrize("platform", ["offscreen", "minimal", "vnc", "wayland", "wayland;xcb"])
def test_other_qt_platforms_are_left_to_qt(platform):
    assert check_display({"QT_QPA_PLATFORM": platform}, "linux", never_asked) is None


def test_wayland_session_is_left_to_qt():
    assert check_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux", never_asked) is None
    assert check_display({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", never_asked) is None
    assert check_display({"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux",
                         never_asked) is None


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_windows_and_macos_are_not_checked(platform):
    assert check_display({}, platform, never_asked) is None


def test_empty_variables_count_as_unset():
    assert "no display" in check_display({"DISPLAY": "", "QT_QPA_PLATFORM": ""}, "linux", all_there)


def test_a_platform_argument_overrides_the_environment():
    env = with_platform_argument({"QT_QPA_PLATFORM": "xcb"}, ["main.py", "-platform", "offscreen"])
    assert env["QT_QPA_PLATFORM"] == "offscreen" and check_display(env, "linux", never_asked) is None
    assert with_platform_argument({}, ["main.py", "--platform", "xcb"]) == {"QT_QPA_PLATFORM": "xcb"}
    assert with_platform_argument({"A": "1"}, ["main.py", "-platform"]) == {"A": "1"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sonames are Linux's")
def test_can_load_finds_libc_and_not_a_made_up_library():
    assert can_load("libc.so.6")
    assert not can_load("libtrav-gui-no-such-library.so.7")


def test_main_prints_the_line_and_returns_1_before_loading_qt(monkeypatch, capsys):
    monkeypatch.setattr(trav_app, "_qt_application_exists", lambda: False)
    monkeypatch.setattr(trav_app, "check_display", lambda environ: "trav-gui: no display (test)")
    assert trav_app.main([]) == 1
    captured = capsys.readouterr()
    assert captured.err == "trav-gui: no display (test)\n" and captured.out == ""


def test_an_existing_qt_application_is_detected(qapp):
    assert trav_app._qt_application_exists()


def _without_display() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform is Linux's")
@pytest.mark.parametrize("command", [["main.py"], ["-m", "trav_gui", "gui"]], ids=["main.py", "trav-gui gui"])
def test_without_a_display_the_app_exits_1_with_one_line_and_no_core_dump(command):
    out = subprocess.run([sys.executable, *command], cwd=ROOT, env=_without_display(), capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
    assert out.returncode not in (134, -6)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "display" in lines[0], out.stderr
    assert "core dumped" not in out.stderr.lower() and "abort" not in out.stderr.lower()
    assert "could not load the Qt platform plugin" not in out.stderr
    assert out.stdout == ""
