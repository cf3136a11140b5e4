"""The layer contracts (scripts/lint_imports.py): the installed layout it lints, and that they hold."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts" / "lint_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_laid_out_tree_is_the_installed_one(tmp_path):
    tree = _script().installed_layout(tmp_path)
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in mapping.items():
        if package != "muselens":  # the namespace's folder is real, its entries links
            assert tree.joinpath(*package.split(".")).resolve() == (ROOT / folder).resolve()
    assert (tree / "muselens" / "cli.py").resolve() == ROOT / "muselens" / "cli.py"
    assert (tree / "muselens" / "v1").resolve() == ROOT / "muselens" / "v1"


def test_the_layer_contracts_hold():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lint_imports.py")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout
