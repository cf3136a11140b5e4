"""The generated gRPC code is exactly what scripts/gen_protos.py makes from protos/ (never hand-edited)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "muselens" / "v1").iterdir())
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "muselens" / "v1").iterdir() if p.suffix in (".py", ".pyi"))
    assert generated == committed
    for rel in generated:
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), f"{rel} is stale: run scripts/gen_protos.py"


def test_the_api_is_versioned():
    from muselens.v1 import recognition_pb2 as pb

    assert pb.DESCRIPTOR.package == "muselens.v1"
    assert set(pb.DESCRIPTOR.services_by_name) == {"Recognizer", "Admin"}
