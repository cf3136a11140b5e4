"""The package's public API, and that importing it pulls in no torch."""

from __future__ import annotations

import subprocess
import sys

import muselens.runtime.explain as explain


def test_public_names_exist():
    assert all(hasattr(explain, name) for name in explain.__all__)


def test_import_needs_no_torch():
    code = (
        "import sys\n"
        "import muselens.runtime.explain\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'onnxruntime'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
