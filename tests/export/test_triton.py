"""Triton repository: the written config.pbtxt, parsed back, must match what ONNX Runtime reports."""

from __future__ import annotations

import argparse
import json
import re

import onnxruntime as ort
import pytest

from muselens.export.triton import pbtxt_string, write_triton_repository
from muselens.core.descriptor_contract import OUTPUT_NAMES

TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(uint8)": "TYPE_UINT8",
         "tensor(int64)": "TYPE_INT64", "tensor(int32)": "TYPE_INT32"}
TOKEN = re.compile(r'\s*(?:#[^\n]*\n|("(?:[^"\\]|\\.)*")|([\[\]{}:,])|([^\s\[\]{}:,"]+))')


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot tokenise {text[pos:pos + 20]!r}")
            break
        pos = m.end()
        if m.group(1):
            raw = m.group(1)[1:-1]
            unescaped = re.sub(rb"\\([0-7]{3}|.)", lambda e: bytes([int(e.group(1), 8)]) if len(e.group(1)) == 3
                               else e.group(1), raw.encode()).decode()
            out.append(("str", unescaped))
        elif m.group(2):
            out.append(("punct", m.group(2)))
        elif m.group(3):
            out.append(("word", m.group(3)))
    return out


def parse_pbtxt(text: str) -> dict:
    """The protobuf text-format subset the writer emits: fields, messages, lists; repeated fields as lists."""
    tokens = _tokens(text)
    pos = 0

    def value():
        nonlocal pos
        kind, tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos][1] != "]":
                items.append(value())
                if tokens[pos][1] == ",":
                    pos += 1
            pos += 1
            return items
        if kind == "str":
            return tok
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(end):
        nonlocal pos
        fields: dict = {}
        while pos < len(tokens) and tokens[pos][1] != end:
            name = tokens[pos][1]
            pos += 1
            if tokens[pos][1] == ":":
                pos += 1
            fields.setdefault(name, []).append(value())
        pos += 1
        return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}

    return message(None)


def _check_against_ort(config: dict, model_path) -> None:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    for ours, theirs in ((config["input"], session.get_inputs()), (config["output"], session.get_outputs())):
        assert [t["name"] for t in ours] == [t.name for t in theirs]
        for t, o in zip(ours, theirs):
            assert t["data_type"] == TYPES[o.type]
            assert t["dims"] == [d if isinstance(d, int) else -1 for d in o.shape]


def test_repository_from_an_onnx_file_matches_onnx_runtime(fp32_model, tmp_path):
    target = write_triton_repository(fp32_model, tmp_path / "repo", model_name="tiny_museum", kind="KIND_GPU",
                                     instance_count=2, gpus=[0])
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == \
        ["1", "1/model.onnx", "config.pbtxt"]
    assert (target / "1" / "model.onnx").read_bytes() == fp32_model.read_bytes()
    config = parse_pbtxt((target / "config.pbtxt").read_text())
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("tiny_museum", "onnxruntime_onnx", 0)
    assert config["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "dims": [1, -1, -1, 3]}]
    assert [o["name"] for o in config["output"]] == list(OUTPUT_NAMES)
    _check_against_ort(config, target / "1" / "model.onnx")
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_GPU", "gpus": [0]}]
    assert "dynamic_batching" not in config
    contract = json.loads(config["parameters"]["value"]["string_value"])
    assert config["parameters"]["key"] == "muselens.descriptor" and contract["dim"] == 8


def test_repository_from_a_bundle_and_the_refusals(tiny_bundle, tmp_path):
    target = write_triton_repository(tiny_bundle, tmp_path, model_name="m")
    config = parse_pbtxt((target / "config.pbtxt").read_text())
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    with pytest.raises(ValueError, match="already exists"):
        write_triton_repository(tiny_bundle, tmp_path, model_name="m")
    cases = [({"max_batch_size": 4}, "max_batch_size must be 0"), ({"kind": "KIND_TPU"}, "kind must be one of"),
             ({"instance_count": 0}, "instance_count"), ({"model_name": "../x"}, "model_name"),
             ({"gpus": [0]}, "needs kind KIND_GPU"), ({"variant": "int8"}, "no model variant"),
             ({"version": 0}, "version")]
    for kwargs, match in cases:
        with pytest.raises((ValueError, KeyError), match=match):
            write_triton_repository(tiny_bundle, tmp_path / "other", **{"model_name": "n", **kwargs})
    with pytest.raises(ValueError, match="neither a bundle nor an .onnx file"):
        write_triton_repository(tmp_path / "m" / "config.pbtxt", tmp_path / "other", model_name="n")
    assert not (tmp_path / "other" / "n").exists()


def test_pbtxt_string_escapes():
    text = 'a "quoted" \\ path é\n'
    assert pbtxt_string(text) == '"a \\"quoted\\" \\\\ path \\303\\251\\012"'
    assert parse_pbtxt(f"k: {pbtxt_string(text)}") == {"k": text}


def test_export_command_writes_the_repository(run_dir, tmp_path, capsys):
    from muselens.export import export_command as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    argv = [str(run_dir), "--out", str(tmp_path / "b"), "--precision", "fp32", "--latency-runs", "0",
            "--triton", str(tmp_path / "repo"), "--name", "museum"]
    assert command.main(parser.parse_args(argv)) == 0
    assert (tmp_path / "repo" / "museum" / "config.pbtxt").exists()
    assert "triton model" in capsys.readouterr().err
    (tmp_path / "b2").mkdir()
    assert command.main(parser.parse_args(argv[:2] + [str(tmp_path / "b2")] + argv[3:])) == 2  # name taken
    assert "already exists" in capsys.readouterr().err and list((tmp_path / "b2").iterdir()) == []
