"""Client text that can forge or hide what an operator reads: control characters and bidi overrides.

A newline in a logged id writes a second, forged log line; U+202E turns ``evil‮gpj.exe`` into
what reads as ``evilexe.jpg``; a NUL cuts strings short in C code further down (and the gallery
refuses it). :func:`first_unsafe` finds such a character so a request can be refused up front;
:func:`log_safe` escapes them, repr-like, wherever client text reaches a log line, and
:func:`log_safe_traceback` does the same for the messages of a logged traceback.

Unsafe: every control character (Unicode category Cc: C0, DEL, C1 -- NUL, tab, CR, LF, ESC, U+0085
included), the line and paragraph separators U+2028/U+2029, and the bidi controls (U+061C,
U+200E/U+200F, U+202A-U+202E, U+2066-U+2069). Other format characters stay allowed: the zero-width
joiner is part of ordinary emoji.
"""

from __future__ import annotations

import traceback
import unicodedata

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
LOG_CHARS = 512  # client text beyond this is cut in logs: a 4 MB path must not flood them


def is_unsafe(char: str) -> bool:
    """Whether ``char`` is a control, a line/paragraph separator or a bidi control."""
    return char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Zl", "Zp")


def first_unsafe(text: str) -> tuple[int, str] | None:
    """``(position, escaped character)`` of the first unsafe character in ``text``, or None."""
    for position, char in enumerate(text):
        if is_unsafe(char):
            return position, _escape(char)
    return None


def log_safe(text: object, limit: int = LOG_CHARS) -> str:
    """``str(text)`` with unsafe characters escaped (``\\n``, ``\\x00``, ``\\u202e``) and cut at ``limit``."""
    text = str(text)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    escaped = "".join(_escape(c) if is_unsafe(c) else c for c in text)
    return escaped + (f"... ({cut} more characters)" if cut > 0 else "")


def log_safe_traceback(exc: BaseException) -> str:
    """``exc``'s traceback (and its causes') for a log, with every exception message escaped.

    The frames are the server's own code; the messages may quote client text (a path, an archive
    member's name) and would forge lines in ``log.exception``'s raw traceback.
    """
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ if exc.__cause__ is not None else None if exc.__suppress_context__ else exc.__context__
    return "\n\nwhich led to:\n\n".join(
        "Traceback (most recent call last):\n" + "".join(traceback.format_tb(e.__traceback__))
        + f"{type(e).__qualname__}: {log_safe(e)}" for e in reversed(chain))


def _escape(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")
