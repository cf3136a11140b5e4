"""Argument checks shared by the frame decoders: wrong Python types are caller bugs (TypeError)."""

from __future__ import annotations

from muselens.core import checks

def as_bytes(data: object, what: str = "frame data") -> bytes:
    """``bytes`` from a bytes-like object; anything else is a caller bug."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, got {type(data).__name__}")


def as_int(value: object, what: str) -> int:
    """An int (not a bool); its range is the decoder's to judge."""
    return checks.integer(value, what)
