import numpy as np
from PIL import Image

from edgetl.data.preprocess import Preprocess, preprocess_image


def test_preprocess_shape_and_normalisation_for_odd_sizes():
    pp = Preprocess.make(32, 0.875, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    assert pp.resize_size == 37
    for size in [(8, 8), (300, 17), (17, 300), (64, 48)]:
        out = preprocess_image(Image.new("RGB", size, (255, 0, 127)), pp)
        assert out.shape == (3, 32, 32) and out.dtype == np.float32
        assert np.allclose(out[0], 1.0) and np.allclose(out[1], -1.0)
    gray = preprocess_image(Image.new("L", (40, 40), 255), pp)
    assert gray.shape == (3, 32, 32) and np.allclose(gray, 1.0)
