"""Check the layers: run import-linter's ``lint-imports`` on the contracts in pyproject.toml.

The source folders at the top of the repository (core/, runtime/, training/, export/,
benchmarks/) are installed under the one ``muselens`` namespace through setuptools' package-dir
mapping, which import-linter (grimp) cannot follow: it walks the folder of ``muselens`` alone and
would find neither ``muselens.core`` nor ``muselens.runtime``. So this lays out the installed tree
as symbolic links in a temporary folder and runs ``lint-imports`` there, on the repository's
pyproject.toml. Usage: ``python scripts/lint_imports.py [lint-imports options]``; the exit status
is lint-imports'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(dest: Path) -> Path:
    """``dest/muselens/...`` laid out as installed, each entry a link into the repository."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        target = dest.joinpath(*package.split("."))
        if package.count(".") == 0:  # the namespace's own folder: its files and subpackages one by one
            target.mkdir(parents=True)
            for entry in (ROOT / folder).iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry)
        else:
            target.symlink_to(ROOT / folder)
    return dest


def main(argv: list[str]) -> int:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        print(f"error: {lint_imports} not found: install the dev extra (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="muselens-layers-") as scratch:
        tree = installed_layout(Path(scratch))
        # Run from the scratch folder: the repository root on sys.path would shadow the laid-out tree.
        env = {**os.environ, "PYTHONPATH": str(tree)}
        return subprocess.run([str(lint_imports), str(ROOT / "pyproject.toml"), "--no-cache", *argv],
                              cwd=tree, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
