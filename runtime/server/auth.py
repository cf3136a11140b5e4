"""Token authentication: a client token for recognition, the admin token for admin calls.

The token file holds one ``<role> <token>`` per line (``client`` or ``admin``; ``#`` starts a
comment)::

    # muselens tokens
    client 6f1c...e2
    admin  9b7d...41

Clients send ``authorization: Bearer <token>`` metadata. With no client token configured,
recognition is open; admin calls always need an admin token, and are refused outright
(PERMISSION_DENIED) when the server has none -- loading bundles from the server's disk must
never be open to anyone who can reach the port. The standard health and reflection services
stay open so load balancers and grpcurl work. Tokens are compared in constant time and never
logged: only their role is.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from muselens.runtime.server.handlers import refusal_handler

log = logging.getLogger(__name__)

ROLES = ("client", "admin")
ADMIN_PREFIX = "/muselens.v1.Admin/"
RECOGNIZER_PREFIX = "/muselens.v1.Recognizer/"


class TokenFileError(ValueError):
    """A token file that cannot be used (the message never contains a token)."""


@dataclass(frozen=True)
class Tokens:
    client: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    _source: str = field(default="", compare=False)

    @classmethod
    def load(cls, path: Path | str) -> Tokens:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise TokenFileError(f"token file {path} is not UTF-8 text") from None
        found: dict[str, list[str]] = {role: [] for role in ROLES}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in ROLES:
                raise TokenFileError(f"{path} line {number}: expected '<client|admin> <token>'")
            if len(parts[1]) < 16:
                raise TokenFileError(f"{path} line {number}: {parts[0]} token is shorter than 16 characters")
            found[parts[0]].append(parts[1])
        if not any(found.values()):
            raise TokenFileError(f"token file {path} holds no tokens")
        mode = path.stat().st_mode
        if mode & 0o077 and os.name == "posix":
            log.warning("token file %s is readable by group/others (mode %o); chmod 600 it", path, mode & 0o777)
        return cls(tuple(found["client"]), tuple(found["admin"]), str(path))

    def role_of(self, token: str) -> str | None:
        """``admin``, ``client`` or None; every candidate is compared (constant time per token)."""
        role = None
        encoded = token.encode()
        for candidate in self.admin:
            if hmac.compare_digest(encoded, candidate.encode()):
                role = "admin"
        if role is None:
            for candidate in self.client:
                if hmac.compare_digest(encoded, candidate.encode()):
                    role = "client"
        return role


def bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return ""
    return None


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks the bearer token of every muselens call before its handler runs."""

    def __init__(self, tokens: Tokens | None, on_refused=None):
        self.tokens = tokens
        self.on_refused = on_refused

    @property
    def admin_enabled(self) -> bool:
        """Whether admin calls can succeed at all: only with an admin token configured."""
        return self.tokens is not None and bool(self.tokens.admin)

    def check(self, method: str, metadata) -> tuple[grpc.StatusCode, str] | None:
        """None if allowed, else (status, message) -- the message never repeats the token."""
        if method.startswith(ADMIN_PREFIX):
            needed = "admin"
        elif method.startswith(RECOGNIZER_PREFIX):
            needed = "client"
        else:
            return None  # health, reflection
        tokens = self.tokens
        if needed == "client" and (tokens is None or not tokens.client):
            return None
        if needed == "admin" and not self.admin_enabled:
            return (grpc.StatusCode.PERMISSION_DENIED,
                    "admin calls are disabled: start the server with --token-file holding an admin token")
        token = bearer_token(metadata)
        if token is None:
            return grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <token>' metadata"
        if token == "":
            return grpc.StatusCode.UNAUTHENTICATED, "malformed authorization metadata: expected 'Bearer <token>'"
        role = tokens.role_of(token)
        if role is None:
            return grpc.StatusCode.UNAUTHENTICATED, "invalid token"
        if needed == "admin" and role != "admin":
            return grpc.StatusCode.PERMISSION_DENIED, "this call needs the admin token"
        return None

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        refused = self.check(handler_call_details.method, handler_call_details.invocation_metadata)
        if refused is None:
            return handler
        log.info("refused %s: %s", handler_call_details.method, refused[1])
        if self.on_refused is not None:
            self.on_refused(handler_call_details.method, refused[0])
        return refusal_handler(handler, *refused)
