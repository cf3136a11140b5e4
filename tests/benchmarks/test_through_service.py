"""The bench's gRPC client: a late answer is asked for again, a real failure still fails the run."""

from __future__ import annotations

import grpc
import pytest

from muselens.benchmarks import through_service
from muselens.benchmarks.through_service import Photo, unary_answers
from muselens.v1 import recognition_pb2 as pb


class _Late(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode):
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class _Client:
    """Fails the first ``failures`` calls with ``code``, then answers."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.DEADLINE_EXCEEDED):
        self.failures, self.code, self.calls = failures, code, 0

    def recognize(self, data, *, frame_id, options, timeout):
        self.calls += 1
        if self.calls <= self.failures:
            raise _Late(self.code)
        return pb.Recognition(frame_id=frame_id, decision=pb.DECISION_ARTWORK,
                              matches=[pb.Match(instance_id="a1", score=0.9)])


@pytest.fixture
def photo(tmp_path):
    (tmp_path / "q.jpg").write_bytes(b"jpeg")
    return Photo(tmp_path / "q.jpg", "query", "a1")


def test_a_late_answer_is_asked_for_again(photo, capsys):
    client = _Client(failures=through_service.DEADLINE_RETRIES)
    (answer,) = unary_answers(client, [photo], top_k=3)
    assert answer.decision == "ARTWORK" and answer.ranking == ("a1",)
    assert client.calls == through_service.DEADLINE_RETRIES + 1
    assert "q.jpg: no answer within" in capsys.readouterr().err


def test_a_call_late_every_time_or_refused_fails_the_run(photo):
    with pytest.raises(grpc.RpcError):
        unary_answers(_Client(failures=through_service.DEADLINE_RETRIES + 1), [photo], top_k=3)
    refused = _Client(failures=1, code=grpc.StatusCode.INVALID_ARGUMENT)
    with pytest.raises(grpc.RpcError):
        unary_answers(refused, [photo], top_k=3)
    assert refused.calls == 1  # only a passed deadline is retried
