"""The distribution's layout: every source package is installed, under the muselens namespace."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_source_package_is_listed():
    tool = _config()["tool"]["setuptools"]
    mapping = tool["package-dir"]
    listed = set(tool["packages"])
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed, f"add to / remove from pyproject packages: {found ^ listed}"


def test_no_generic_top_level_names_are_installed():
    tool = _config()["tool"]["setuptools"]
    assert all(p == "muselens" or p.startswith("muselens.") for p in tool["packages"])


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "muselens", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in ("make-museum", "check-data"):
        assert name in out


def test_runtime_imports_without_torch():
    """The serving side and the base it stands on must install and run where torch does not exist."""
    code = (
        "import sys, importlib, pkgutil\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'timm'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import muselens.core as core, muselens.runtime as rt\n"
        "for pkg in (core, rt):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "import muselens.cli\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
