"""Registering a servicer whose requests muselens parses itself, not grpc-python.

grpc-python answers a request it cannot deserialize with INTERNAL ("Exception deserializing
request!"), which reads as a server fault, ends a stream with it, and (grpcio 1.85) keeps about
19 KB of memory per such request for good: 1,000 of them add 19 MB to a bare server's RSS that
``gc.collect()`` does not free, while the same bytes parsed in the handler add nothing
(``muselens bench bad-input`` found it). Parsing here makes a malformed message a client error
like any other: INVALID_ARGUMENT with reason ``malformed_message`` on a unary call; on a stream
the servicer receives a :class:`MalformedMessage` in place of that one frame, answers it, and
the stream goes on (gRPC's own framing is intact, only the protobuf inside is broken).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from muselens.runtime.safe_text import log_safe_traceback

log = logging.getLogger(__name__)

MALFORMED = "malformed_message"


@dataclass(frozen=True)
class MalformedMessage:
    """A request whose bytes are no valid ``type_name``: what arrives instead of the message."""

    type_name: str
    size: int
    error: str

    @property
    def message(self) -> str:
        return f"the request is no valid {self.type_name} ({self.size} bytes; {self.error})"

    def details(self) -> str:
        """Status details in the servicers' ``"<reason>: ..."`` form."""
        return f"{MALFORMED}: {self.message}"


def lenient_parser(message_class: type[Message]) -> Callable[[bytes], Message | MalformedMessage]:
    """``message_class.FromString`` that returns a :class:`MalformedMessage` instead of raising."""
    type_name = message_class.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | MalformedMessage:
        try:
            return message_class.FromString(data)
        except DecodeError as exc:
            return MalformedMessage(type_name, len(data), str(exc) or "cannot be parsed")

    return parse


def _refusing_malformed(behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str,
                        on_malformed: Callable[[str], None] | None) -> Callable[[Any, grpc.ServicerContext], Any]:
    """A unary-request behaviour that answers a malformed request INVALID_ARGUMENT itself."""

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, MalformedMessage):
            if on_malformed is not None:
                on_malformed(method)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details())
        return behaviour(request, context)

    return handle


def _answering_failures(behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str,
                        streaming: bool) -> Callable[[Any, grpc.ServicerContext], Any]:
    """A behaviour whose unexpected exception is answered INTERNAL, never grpc's UNKNOWN
    ("Exception calling application: <the message>"), and logged with its messages escaped:
    they may quote client text. An abort (``context.abort``) passes through as it is."""

    def fail(exc: Exception, context: grpc.ServicerContext) -> None:
        log.error("%s failed: %s", method, log_safe_traceback(exc))
        context.abort(grpc.StatusCode.INTERNAL, f"{method} failed inside the server ({type(exc).__name__}); "
                                                "the server logged it")

    # An abort (the servicer's own status) is re-raised bare, inside the except clause: raising
    # the caught exception from a helper frame made that frame hold the exception holding the
    # frame, a reference cycle that kept the request (16 MB for a raw frame) until the cyclic GC.
    if streaming:
        def handle_stream(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from behaviour(request, context)
            except Exception as exc:  # noqa: BLE001 -- the one place an unexpected failure becomes a status
                if context.code() is not None:
                    raise
                fail(exc, context)
        return handle_stream

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(request, context)
        except Exception as exc:  # noqa: BLE001 -- as above
            if context.code() is not None:
                raise
            fail(exc, context)
    return handle


_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(server: grpc.Server, service: ServiceDescriptor, servicer: object,
                 on_malformed: Callable[[str], None] | None = None) -> None:
    """Register every method of ``service`` (as the generated ``add_*Servicer_to_server`` would),
    with lenient parsing. Unary-request methods never see a malformed request (it is refused
    here, ``on_malformed(method name)`` called); streaming-request methods receive
    :class:`MalformedMessage` items among their messages and must answer them."""
    handlers = {}
    for method in service.methods:
        behaviour = _answering_failures(getattr(servicer, method.name), method.name, method.server_streaming)
        if not method.client_streaming:
            behaviour = _refusing_malformed(behaviour, method.name, on_malformed)
        response_class = message_factory.GetMessageClass(method.output_type)
        factory = _FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(behaviour,
                                        request_deserializer=lenient_parser(
                                            message_factory.GetMessageClass(method.input_type)),
                                        response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def refusal_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler in place of ``handler`` that answers ``code`` and ``details`` without reading the
    request: its request side is a stream, which gRPC hands over unread. A unary handler would
    first receive the whole message into Python and parse it, the refusal's largest cost under a
    flood (an 825 KB frame: about 1 ms holding the GIL). Interceptors refuse with it."""

    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, details)

    return held_handler(handler, refuse)


def held_handler(handler: grpc.RpcMethodHandler,
                 behaviour: Callable[[Any, grpc.ServicerContext], None]) -> grpc.RpcMethodHandler:
    """A handler in place of ``handler`` whose ``behaviour`` gets the request unread (a request
    stream it need not iterate); ``behaviour`` must end the call (``context.abort``)."""
    return _FACTORIES[(True, handler.response_streaming)](behaviour)


def add_refusing_service(server: grpc.Server, service: ServiceDescriptor, code: grpc.StatusCode,
                         details: str) -> None:
    """Register every method of ``service`` as answering ``code`` and ``details`` at once, its
    request unparsed (e.g. Admin on the main port of a server with an admin port). Interceptors
    still run first, so a caller the auth refuses learns nothing from ``details``."""

    def refuse(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(code, details)

    handlers = {method.name: _FACTORIES[(method.client_streaming, method.server_streaming)](refuse)
                for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
