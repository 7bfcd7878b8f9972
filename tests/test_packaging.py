"""The wheel carries what a user needs: every package, and every file of resources/."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from setuptools import find_packages

from trav_gui.paths import resources_dir

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed_for_the_wheel():
    found = set(find_packages(str(ROOT), include=["trav_gui*", "training*"]))
    assert found <= set(CONFIG["packages"]), f"add to [tool.setuptools] packages: {sorted(found - set(CONFIG['packages']))}"


def test_every_file_of_resources_ships_in_the_wheel():
    """resources/ maps to trav_gui.resources; each file must match its folder's package-data globs."""
    assert CONFIG["package-dir"]["trav_gui.resources"] == "resources"
    data = CONFIG["package-data"]
    files = [p for p in (ROOT / "resources").rglob("*") if p.is_file()]
    assert len(files) > 30
    for path in files:
        rel = path.relative_to(ROOT / "resources")
        package = ".".join(("trav_gui", "resources", *rel.parent.parts))
        assert package in CONFIG["packages"], f"{rel.parent}: not a listed package"
        assert any(fnmatch.fnmatch(rel.name, g) for g in data.get(package, [])), f"{rel}: not in package-data"


def test_a_checkout_reads_its_own_resources_folder(monkeypatch):
    monkeypatch.delenv("TRAV_GUI_RESOURCES", raising=False)
    assert resources_dir() == ROOT / "resources"
