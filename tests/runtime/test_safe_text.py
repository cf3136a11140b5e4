"""Control characters and bidi overrides found and escaped; ordinary Unicode left alone."""

from __future__ import annotations

import pytest

from muselens.runtime.safe_text import BIDI_CONTROLS, first_unsafe, is_unsafe, log_safe


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9b",
                                  "\u2028", "\u2029", *sorted(BIDI_CONTROLS)])
def test_controls_separators_and_bidi_controls_are_unsafe(char):
    assert is_unsafe(char)
    assert first_unsafe(f"ab{char}c") == (2, char.encode("unicode_escape").decode())
    assert char not in log_safe(f"ab{char}c")


@pytest.mark.parametrize("text", ["café", "東京", "Mona Lisa 🖼", "👨\u200d👩\u200d👧", "a b/c\\d", ""])
def test_ordinary_text_is_safe_and_logged_as_it_is(text):
    assert first_unsafe(text) is None
    assert log_safe(text) == text


def test_log_safe_escapes_like_repr_and_forges_no_line():
    assert log_safe("id\nINFO forged line") == "id\\nINFO forged line"
    assert log_safe("evil\u202egpj.exe") == "evil\\u202egpj.exe"
    assert log_safe("a\x00b\x1b[31m") == "a\\x00b\\x1b[31m"
    assert log_safe(b"bytes\n") == "b'bytes\\n'"  # str() first, as a log call would


def test_log_safe_cuts_long_text_and_says_how_much():
    assert log_safe("x" * 600, limit=500) == "x" * 500 + "... (100 more characters)"
    assert log_safe("\n" * 10, limit=4) == "\\n" * 4 + "... (6 more characters)"


def test_log_safe_traceback_keeps_the_frames_and_escapes_every_message():
    from muselens.runtime.safe_text import log_safe_traceback

    def load(path):
        try:
            raise OSError(f"cannot open {path}")
        except OSError as exc:
            raise ValueError(f"bundle {path} refused") from exc

    try:
        load("x\nINFO forged\u202e")
    except ValueError as exc:
        text = log_safe_traceback(exc)
    assert "\nINFO forged" not in text and "\u202e" not in text
    assert text.count("Traceback (most recent call last):") == 2 and "which led to:" in text
    assert "OSError: cannot open x\\nINFO forged\\u202e" in text
    assert text.endswith("ValueError: bundle x\\nINFO forged\\u202e refused")
    assert "in load" in text  # the frames are kept
