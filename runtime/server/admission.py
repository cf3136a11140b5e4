"""How many streams and calls the server holds at once, in all and per client token.

A gRPC sync server runs every call on a worker thread of one pool, and a stream holds its
worker for as long as it stays open, frames or not. Sixteen streams that send nothing once
took all sixteen workers: a good ``Recognize``, the health check and ``Admin.LoadBundle``
then waited until their deadlines. Streams therefore get at most ``max_streams`` workers
(by default three quarters of them), so unary calls, health and admin always find one; a
stream beyond the cap, or beyond a token's own cap, is refused at once (RESOURCE_EXHAUSTED)
instead of waiting for a worker.

Unary calls: gRPC refuses those beyond ``max_pending_calls`` (running or waiting for a worker)
at once, but one client with hundreds of calls in flight filled that queue by itself, and a
good client's calls were refused or waited behind all of them. So a client token may have
at most ``max_calls_per_token`` calls running (by default a quarter of the workers); more are
refused at once, which frees their place in gRPC's queue straight away, and the inference
gate serves tokens in turn (:func:`muselens.runtime.engine.gate.fair_share`). Clients are
told apart only by valid client tokens: on a server without them every call is anonymous
and only the server-wide caps hold.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import grpc

from muselens.runtime.server.auth import bearer_token
from muselens.runtime.server.handlers import held_handler, refusal_handler
from muselens.runtime.server.penalty import CAPACITY, PENALISED, RefusalPenalty


def default_max_streams(workers: int) -> int:
    """Three quarters of the workers (at least one), the rest kept for unary, health and admin."""
    return max(1, workers * 3 // 4)


def default_max_calls_per_token(workers: int) -> int:
    """A quarter of the workers (at least one): four clients' worth of calls can run at once."""
    return max(1, workers // 4)


class TokenAdmission:
    """Counts what is open at once (streams, or calls), in all and per client token;
    :meth:`enter` says whether one more may open, :meth:`leave` frees it."""

    def __init__(self, max_open: int, max_per_token: int | None = None, what: str = "open streams"):
        for name, value in (("max_open", max_open), ("max_per_token", max_per_token)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.max_open = max_open
        self.max_per_token = max_per_token
        self.what = what
        self._lock = threading.Lock()
        self._open = 0
        self._by_token: Counter[str] = Counter()

    def refusal(self, token: str | None) -> str | None:
        """Why one more for ``token`` would be refused now, or None (admits nothing: a look ahead)."""
        with self._lock:
            return self._refusal(token)

    def _refusal(self, token: str | None) -> str | None:
        if self._open >= self.max_open:
            return f"the server holds its maximum of {self.max_open} {self.what}"
        if token is not None and self.max_per_token is not None and self._by_token[token] >= self.max_per_token:
            return f"this client token holds its maximum of {self.max_per_token} {self.what}"
        return None

    def enter(self, token: str | None) -> str | None:
        """Admit one for ``token`` (None: a client not told apart) and return None, or say why not."""
        with self._lock:
            refused = self._refusal(token)
            if refused is not None:
                return refused
            self._open += 1
            if token is not None:
                self._by_token[token] += 1
            return None

    def leave(self, token: str | None) -> None:
        with self._lock:
            self._open -= 1
            if token is not None:
                self._by_token[token] -= 1
                if not self._by_token[token]:
                    del self._by_token[token]

    @property
    def open(self) -> int:
        return self._open


class CallAdmissionInterceptor(grpc.ServerInterceptor):
    """Refuses, before gRPC reads its request, a call that would be refused anyway: a unary call
    beyond its client's (or the server's) cap, and any frame call of a penalised client
    (:class:`~muselens.runtime.server.penalty.RefusalPenalty`), the latter after holding it.

    The servicer still admits each call (:meth:`TokenAdmission.enter`, the count that holds); the
    cap here is a look ahead that makes the refusal cheap. A client with hundreds of calls in
    flight is refused as fast as it sends, and each refusal used to read and parse its request.
    ``capped``: full names of the unary methods the calls cap admits; ``penalised``: those a
    penalised client is refused. ``known``: whether a token is one the server accepts; a call
    with any other is left to the auth, which refuses it, and counts towards nothing here.
    """

    def __init__(self, calls: TokenAdmission, capped: frozenset[str], *, identifies_clients: bool,
                 penalty: RefusalPenalty | None = None, penalised: frozenset[str] = frozenset(),
                 on_refused: Callable[[str, str], None] | None = None,
                 known: Callable[[str], bool] | None = None):
        self.calls = calls
        self.known = known
        self.capped = frozenset(capped)
        self.penalty = penalty
        self.penalised = frozenset(penalised) if penalty is not None else frozenset()
        self.identifies_clients = identifies_clients
        self.on_refused = on_refused  # (method, outcome: "capacity" or "penalised")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or (method not in self.capped and method not in self.penalised):
            return handler
        token = bearer_token(handler_call_details.invocation_metadata) if self.identifies_clients else None
        if token is not None and self.known is not None and not self.known(token):
            return handler  # the auth refuses it
        if method in self.penalised and self.penalty.remaining(token) is not None:
            self._refused(method, "penalised")
            return self._held_refusal(handler, token)
        refused = self.calls.refusal(token) if method in self.capped else None
        if refused is None:
            return handler
        self._refused(method, CAPACITY)
        if self.penalty is not None:
            self.penalty.record(token, CAPACITY)
        return refusal_handler(handler, grpc.StatusCode.RESOURCE_EXHAUSTED, f"call refused: {refused}; retry later")

    def _refused(self, method: str, outcome: str) -> None:
        if self.on_refused is not None:
            self.on_refused(method, outcome)

    def _held_refusal(self, handler: grpc.RpcMethodHandler, token: str | None) -> grpc.RpcMethodHandler:
        """A handler that holds the call (while the client's penalty lasts, at most ``hold_s``, and
        only within its calls in flight), then refuses it; the request is never read."""
        penalty, calls = self.penalty, self.calls

        def hold_and_refuse(request_iterator, context: grpc.ServicerContext) -> None:
            remaining = penalty.remaining(token)
            if remaining is not None and calls.enter(token) is None:
                try:
                    ended = threading.Event()
                    if context.add_callback(ended.set):
                        ended.wait(min(penalty.hold_s, remaining[0]))
                finally:
                    calls.leave(token)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          penalty.message(token) or f"{PENALISED}: this client's frames were refused for their cost")

        return held_handler(handler, hold_and_refuse)
