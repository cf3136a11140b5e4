"""Source-level security checks: nothing that loads a file can run code from it.

Bundles, checkpoints and galleries come from disk and, for bundles, from operators over the
Admin API; a pickle inside any of them would execute on load. So: no ``pickle`` module, numpy
loads never ``allow_pickle=True``, every ``torch.load(`` passes ``weights_only=True``, YAML is
read with ``safe_load`` and no subprocess runs through a shell. The scan reads code, not
comments or docstrings, so prose may name what it forbids.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("core", "runtime", "training", "export", "benchmarks", "muselens")
GENERATED = re.compile(r"_pb2(_grpc)?\.py$")


def _sources() -> list[Path]:
    files = [p for folder in SCANNED for p in sorted((ROOT / folder).rglob("*.py")) if not GENERATED.search(p.name)]
    assert len(files) > 50, "the scan found too few files: wrong root?"
    return files


def _code_without_comments_and_strings(source: str) -> str:
    """The source with comments and string literals blanked (keeps line numbers)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        out.append((tok.type, tok.string))
    return tokenize.untokenize(out)


def _calls(tree: ast.AST, dotted: str):
    """Every call of ``dotted`` (e.g. ``torch.load``) in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == dotted:
            yield node


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


@pytest.fixture(scope="module")
def parsed() -> dict[Path, tuple[str, ast.AST]]:
    return {p: (p.read_text(), ast.parse(p.read_text(), str(p))) for p in _sources()}


def test_no_pickle_module(parsed):
    offenders = []
    for path, (source, tree) in parsed.items():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "joblib") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        if re.search(r"\bpickle\.", _code_without_comments_and_strings(source)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_numpy_never_allows_pickles(parsed):
    offenders = []
    for path, (source, tree) in parsed.items():
        if re.search(r"allow_pickle\s*=\s*True", _code_without_comments_and_strings(source)):
            offenders.append(str(path.relative_to(ROOT)))
        for call in _calls(tree, "np.load"):
            value = _keyword(call, "allow_pickle")
            if not (isinstance(value, ast.Constant) and value.value is False):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno} np.load without allow_pickle=False")
    assert offenders == []


def test_torch_load_is_weights_only(parsed):
    found, offenders = 0, []
    for path, (_, tree) in parsed.items():
        for call in _calls(tree, "torch.load"):
            found += 1
            value = _keyword(call, "weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert found >= 1 and offenders == []  # found: the scan does see the checkpoint loaders


def test_yaml_is_safe_and_no_shell(parsed):
    offenders = []
    for path, (_, tree) in parsed.items():
        for name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec", "os.system"):
            offenders += [f"{path.relative_to(ROOT)}:{c.lineno} {name}" for c in _calls(tree, name)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("subprocess."):
                value = _keyword(node, "shell")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} shell=")
    assert offenders == []


def test_the_checks_catch_what_they_forbid():
    bad = ("import pickle\nx = pickle.loads(b'')\nimport numpy as np\nnp.load('f', allow_pickle=True)\n"
           "torch.load('m.pt')\n")
    tree = ast.parse(bad)
    assert [c.lineno for c in _calls(tree, "torch.load")] == [5]
    assert _keyword(next(_calls(tree, "torch.load")), "weights_only") is None
    assert re.search(r"allow_pickle\s*=\s*True", _code_without_comments_and_strings(bad))
    assert "allow_pickle" not in _code_without_comments_and_strings("'''allow_pickle=True'''\n# pickle.loads\n")
