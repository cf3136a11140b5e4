"""The package's public API, and that importing it pulls in neither torch nor scikit-learn."""

from __future__ import annotations

import subprocess
import sys

import muselens.core.metrics as metrics


def test_public_names_exist():
    assert all(hasattr(metrics, name) for name in metrics.__all__)


def test_import_needs_neither_torch_nor_sklearn():
    code = (
        "import sys\n"
        "import muselens.core.metrics\n"
        "import muselens.core.metrics.clustering, muselens.core.metrics.open_set\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
