"""Every command keeps ONNX Runtime's telemetry off: its import alone writes under ~/.cache."""

import os
from types import SimpleNamespace

from muselens import cli


def _run_with_main(monkeypatch, argv, main):
    real_load = cli._load
    monkeypatch.setattr(cli, "_load", lambda name: SimpleNamespace(
        add_arguments=real_load(name).add_arguments, main=main))
    return cli.main(argv)


def test_every_command_turns_ort_telemetry_off_before_its_work(monkeypatch, tmp_path):
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    seen = {}

    def main(args):
        seen["value"] = os.environ.get("ORT_DISABLE_TELEMETRY")
        return 0

    assert _run_with_main(monkeypatch, ["check-data", str(tmp_path)], main) == 0
    assert seen["value"] == "1"


def test_an_operators_own_setting_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "0")
    _run_with_main(monkeypatch, ["check-data", str(tmp_path)], lambda args: 0)
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "0"
