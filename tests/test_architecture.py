"""The layering rules that import-linter does not express: no import cycle, function-local imports
only to keep optional dependencies lazy, module size, and a Qt-free CLI at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

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
    code = ("import sys, trav_gui.cli, trav_gui.engine.output.export, trav_gui.engine.core.traversal, "
            "trav_gui.engine.output.gallery, trav_gui.engine.models.cache, training.evaluate, trav_gui.api, "
            "trav_gui.cli_models, trav_gui.cli_datasets, trav_gui.engine.data.folders, trav_gui.engine.models.user_models, trav_gui.engine.models.onnx_model, "
            "trav_gui.engine.models.onnx_ops;"
            "trav_gui.cli.build_parser();"
            "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'trav_gui.qt'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("trav_gui")


def test_no_import_cycle_between_modules(graph):
    """Function-local imports included: grimp reads every import statement in a module."""
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(edges) == []


@pytest.mark.parametrize("container", ["trav_gui", "trav_gui.engine", "trav_gui.engine.models", "trav_gui.qt"])
def test_no_import_cycle_between_the_parts_of_a_package(graph, container):
    """One level up: the subpackages and modules of ``container``, each with all it contains."""
    depth = container.count(".") + 2

    def part(module: str) -> str | None:
        if not module.startswith(container + "."):
            return None
        return ".".join(module.split(".")[:depth])

    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        a = part(m)
        if a is None:
            continue
        for imported in graph.find_modules_directly_imported_by(m):
            b = part(imported)
            if b is not None and b != a:
                edges.setdefault(a, set()).add(b)
    assert _cycles(edges) == []


# Modules whose functions may import lazily, and why: each keeps something heavy out of a start-up
# that does not need it.
LAZY_MODULES = {
    "__init__.py": "import trav_gui loads neither torch nor Qt (the API is imported on first use)",
    "api.py": "import trav_gui loads neither torch nor Qt; trav_gui.show loads Qt only when called",
    "cli.py": "trav-gui --help and argument errors load no torch; only trav-gui gui loads Qt",
    "cli_models.py": "the models subcommands load torch only when they run",
    "cli_datasets.py": "the datasets subcommands load torch only when they run",
    "qt/app.py": "the preflight check runs before Qt is imported, to say what is missing in one line",
    "qt/show.py": "the same preflight, for trav_gui.show",
    "engine/runs/child.py": "the compute process's lifeline is up before torch loads (a window closed at once waits for nothing)",
}
# Inside the engine, only optional or slow dependencies may be imported lazily (with a reason on the line).
ENGINE_LAZY = {"onnx", "onnx2torch", "onnxruntime", "torchvision", "imageio", "imageio_ffmpeg",
               "trav_gui.engine.models.onnx_ops"}


def _local_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    yield node, node.module or ""
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        yield node, alias.name


def test_function_local_imports_only_keep_optional_dependencies_lazy():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in LAZY_MODULES:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, module in _local_imports(path):
            allowed = name.startswith("engine/") and (module.split(".")[0] in ENGINE_LAZY or module in ENGINE_LAZY)
            # the reason on the line, or on a comment up to three lines above (one for an import block)
            reason = any("lazy" in line for line in lines[max(0, node.lineno - 4): node.lineno])
            if not (allowed and reason):
                wrong.append(f"{name}:{node.lineno} imports {module} inside a function")
    assert not wrong, "import these at the top, or say why they must be lazy:\n" + "\n".join(wrong)


def test_the_lazy_import_check_sees_a_local_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from trav_gui.engine.models import loading\n")
    assert [m for _, m in _local_imports(module)] == ["trav_gui.engine.models"]


def test_the_architecture_map_names_every_engine_module():
    """docs/ARCHITECTURE.md says where each job lives: a module it does not name is a room without a door."""
    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    engine = PACKAGE / "engine"
    modules = [p.relative_to(engine).as_posix() for p in engine.rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) > 20
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/ARCHITECTURE.md does not say what these do: {missing}"
