"""Tokens: who may call what, the token file's format, and tokens never in messages or logs."""

from __future__ import annotations

import logging

import grpc
import pytest

from muselens.runtime.server.auth import TokenFileError, Tokens, bearer_token
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame
from tests.runtime.server.test_admin import ADMIN, AS_ADMIN, AS_CLIENT, CLIENT, TOKENS


@pytest.mark.parametrize("metadata, code", [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer wrong-token-0123456789"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", f"Basic {CLIENT}"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer"),), grpc.StatusCode.UNAUTHENTICATED),
    (AS_CLIENT, None),
    (AS_ADMIN, None),  # the admin token may recognise too
])
def test_recognition_needs_a_client_token(served, start_server, query_images, metadata, code, caplog):
    server = start_server(served, tokens=TOKENS)
    caplog.set_level(logging.DEBUG)
    for call in (lambda: server.stub.Recognize(frame(query_images[0]), metadata=metadata),
                 lambda: list(server.stub.StreamRecognize(iter([frame(query_images[0])]), metadata=metadata)),
                 lambda: server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), metadata=metadata)):
        if code is None:
            call()
            continue
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code
        assert CLIENT not in err.value.details() and "wrong-token" not in err.value.details()
    assert CLIENT not in caplog.text and ADMIN not in caplog.text and "wrong-token" not in caplog.text


def test_admin_calls_need_the_admin_token(served, start_server, tiny_bundle):
    server = start_server(served, tokens=TOKENS)
    request = pb.LoadBundleRequest(path=str(tiny_bundle))
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(request, metadata=AS_CLIENT)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(request)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.admin.LoadBundle(request, metadata=AS_ADMIN).bundle_version == "1.0.0"
    refused = server.server.metrics.exposition().decode()
    assert 'muselens_auth_refused_total{code="PERMISSION_DENIED"} 1.0' in refused


def test_without_tokens_recognition_is_open_and_admin_is_disabled(served, start_server, query_images, tiny_bundle):
    server = start_server(served)
    assert server.stub.Recognize(frame(query_images[0])).matches
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(pb.LoadBundleRequest(path=str(tiny_bundle)), metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin calls are disabled" in err.value.details()


def test_an_admin_only_token_file_leaves_recognition_open(served, start_server, query_images):
    server = start_server(served, tokens=Tokens(admin=(ADMIN,)))
    assert server.stub.Recognize(frame(query_images[0])).matches


def test_token_file_format(tmp_path):
    good = tmp_path / "tokens"
    good.write_text(f"# comment\nclient {CLIENT}\n\nadmin {ADMIN}  # trailing comment\n")
    good.chmod(0o600)
    tokens = Tokens.load(good)
    assert (tokens.client, tokens.admin) == ((CLIENT,), (ADMIN,))
    assert tokens.role_of(ADMIN) == "admin" and tokens.role_of(CLIENT) == "client" and tokens.role_of("x") is None
    for text, message in [("viewer abcdefghijklmnopq\n", "line 1"), ("client short\n", "shorter than 16"),
                          ("# nothing\n", "holds no tokens"), ("client a b\n", "line 1")]:
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(TokenFileError, match=message) as err:
            Tokens.load(bad)
        assert "abcdefghijklmnopq" not in str(err.value)
    with pytest.raises(TokenFileError, match="cannot read"):
        Tokens.load(tmp_path / "missing")


def test_bearer_parsing():
    assert bearer_token((("Authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("authorization", "bearer  abc "),)) == "abc"
    assert bearer_token((("authorization", "Token abc"),)) == ""
    assert bearer_token((("x-other", "1"),)) is None
