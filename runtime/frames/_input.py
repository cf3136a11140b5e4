"""Argument checks shared by the frame decoders: wrong Python types are caller bugs (TypeError)."""

from __future__ import annotations


def as_bytes(data: object, what: str = "frame data") -> bytes:
    """``bytes`` from a bytes-like object; anything else is a caller bug."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, got {type(data).__name__}")


def as_int(value: object, what: str) -> int:
    """An int (not a bool); its range is the decoder's to judge."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value
