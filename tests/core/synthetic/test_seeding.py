from __future__ import annotations

import numpy as np
import pytest

from muselens.core.synthetic.seeding import PHOTO, rng_for


def test_same_key_same_stream_and_other_keys_differ():
    a = rng_for(7, PHOTO, 1, 0, 2).random(8)
    np.testing.assert_array_equal(a, rng_for(7, PHOTO, 1, 0, 2).random(8))
    for other in (rng_for(8, PHOTO, 1, 0, 2), rng_for(7, PHOTO, 1, 1, 2), rng_for(7, PHOTO, 2, 0, 1)):
        assert not np.array_equal(a, other.random(8))


def test_draws_elsewhere_do_not_shift_a_stream():
    """Global NumPy state and other generators must not leak into a keyed stream."""
    expected = rng_for(3, PHOTO, 0, 0, 0).random(4)
    np.random.seed(123)
    np.random.random(100)
    rng_for(3, PHOTO, 0, 0, 1).random(1000)
    np.testing.assert_array_equal(expected, rng_for(3, PHOTO, 0, 0, 0).random(4))


@pytest.mark.parametrize("seed, key", [(-1, (0,)), (0, (-1,))])
def test_negative_seed_or_key_is_refused(seed, key):
    with pytest.raises(ValueError, match=">= 0"):
        rng_for(seed, PHOTO, *key)
