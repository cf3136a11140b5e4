import numpy as np
import pytest

from muselens.core.synthetic.phone import phone_view


def test_a_phone_view_is_a_changed_image_of_the_same_size_and_a_function_of_its_seed():
    rng = np.random.default_rng(0)
    image = np.zeros((120, 90, 3), np.uint8)
    image[20:100, 15:75] = rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)
    a = phone_view(image, np.random.default_rng(5))
    b = phone_view(image, np.random.default_rng(5))
    c = phone_view(image, np.random.default_rng(6))
    assert a.shape == image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.abs(a.astype(int) - image).mean() > 2


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((4, 40, 3), np.uint8)])
def test_a_phone_view_refuses_what_is_not_an_rgb_photo(bad):
    with pytest.raises(ValueError, match="phone view"):
        phone_view(bad, np.random.default_rng(0))
