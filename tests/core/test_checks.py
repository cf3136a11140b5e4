"""The argument checks every layer uses: what they accept, and how they refuse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from muselens.core import checks


def test_integers_accept_numpy_and_refuse_bools_and_floats():
    assert checks.integer(np.int64(3), "k", low=1) == 3 and type(checks.integer(np.int64(3), "k")) is int
    assert checks.optional_int(None, "k") is None and checks.positive_int(2, "k") == 2
    for bad in (True, np.bool_(True), 2.0, "2", None):
        with pytest.raises(checks.WrongTypeError, match="k must be an int >= 1"):
            checks.integer(bad, "k", low=1)


@pytest.mark.parametrize("call, match", [
    (lambda: checks.integer(0, "k", low=1), "k must be >= 1, got 0"),
    (lambda: checks.integer(101, "quality", low=1, high=100), r"quality must lie in \[1, 100\], got 101"),
    (lambda: checks.integer(2.5, "quality", low=1, high=100), r"quality must be an int in \[1, 100\]"),
    (lambda: checks.integer(6, "n", high=5), "n must be <= 5"),
    (lambda: checks.number(math.nan, "floor"), "floor must be finite, got nan"),
    (lambda: checks.number(0.0, "half_life", low=0, low_open=True), "half_life must be finite and > 0"),
    (lambda: checks.number(1.5, "p", low=0, high=1), r"p must lie in \[0, 1\], got 1.5"),
    (lambda: checks.number(1.0, "p", low=0, high=1, high_open=True), r"p must lie in \[0, 1\)"),
    (lambda: checks.text("  ", "name"), "name must not be empty"),
    (lambda: checks.one_of("x", "mode", ("a", "b")), r"mode must be one of \['a', 'b'\], got 'x'"),
    (lambda: checks.float_array(np.ones((2, 2)), "q", 1), "q must be 1-D"),
    (lambda: checks.float_array(np.ones(0), "q", 1), "q must not be empty"),
    (lambda: checks.float_array(np.array([np.inf]), "q", 1), "q contains non-finite"),
    (lambda: checks.vector(np.ones(3), "d", 4), "d has 3 dimensions, expected 4"),
    (lambda: checks.rows(np.ones((2, 3)), "r", 4), "r has 3 dimensions per row, expected 4"),
    (lambda: checks.labels(np.ones(2), "ids"), "ids must hold integers or strings"),
    (lambda: checks.bool_vector(np.ones(2, bool), "m", 3), "m has 2 entries, expected 3"),
    (lambda: checks.rgb_image(np.zeros((2, 2, 3), np.float32), "img"), "img must be uint8"),
    (lambda: checks.size((2, 0), "size"), "size must hold positive ints"),
])
def test_each_refusal_names_the_argument_and_the_rule(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: checks.number("0.5", "x"), lambda: checks.number(True, "x"), lambda: checks.flag(1, "x"),
    lambda: checks.text(3, "x"), lambda: checks.mapping([], "x"),
    lambda: checks.float_array(np.ones(2, np.int64), "x", 1),
])
def test_a_wrong_type_is_a_type_error_and_a_value_error(call):
    with pytest.raises(TypeError) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, checks.WrongTypeError)


def test_numbers_come_back_as_python_floats():
    assert checks.number(np.float32(0.5), "x", low=0, high=1) == 0.5
    assert type(checks.number(np.int8(2), "x")) is float
    assert checks.flag(np.bool_(False), "x") is False


def test_byte_strings_come_from_any_bytes_like_object_and_nothing_else():
    assert checks.byte_string(b"ab", "data") == b"ab"
    assert checks.byte_string(bytearray(b"ab"), "data") == b"ab" == checks.byte_string(memoryview(b"ab"), "data")
    for bad in ("ab", [97, 98], None):
        with pytest.raises(TypeError, match="frame data must be bytes, bytearray or memoryview"):
            checks.byte_string(bad, "frame data")
