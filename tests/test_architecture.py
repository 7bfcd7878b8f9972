"""The layering rules that import-linter does not express: module size and Qt-free CLI at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trav_gui

PACKAGE = Path(trav_gui.__file__).parent
MAX_MODULE_LINES = 500


def test_no_module_in_the_package_is_over_500_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert sizes, "no modules found"
    too_big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_big, f"split these modules (over {MAX_MODULE_LINES} lines): {too_big}"


def test_the_command_line_and_the_engine_load_no_qt():
    code = ("import sys, trav_gui.cli, trav_gui.engine.export, trav_gui.engine.traversal, "
            "trav_gui.engine.gallery, trav_gui.engine.model_cache, training.evaluate, trav_gui.api, "
            "trav_gui.cli_models, trav_gui.engine.user_models, trav_gui.engine.onnx_model, trav_gui.engine.onnx_ops;"
            "trav_gui.cli.build_parser();"
            "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'trav_gui.qt'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
