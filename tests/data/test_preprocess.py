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


def test_large_jpegs_are_decoded_at_a_reduced_scale_and_other_large_images_refused(tmp_path, monkeypatch):
    import pytest
    from PIL import Image

    from edgetl.data import preprocess
    from edgetl.data.preprocess import ImageTooLargeError, load_image

    monkeypatch.setattr(preprocess, "DRAFT_ABOVE_PIXELS", 100_000)
    monkeypatch.setattr(preprocess, "DRAFT_SHORT_SIDE", 100)
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 200_000)
    Image.new("RGB", (800, 600), (200, 10, 10)).save(tmp_path / "big.jpg")
    Image.new("RGB", (800, 600), (200, 10, 10)).save(tmp_path / "big.png")
    img = load_image(tmp_path / "big.jpg")
    assert img.size == (200, 150) and img.getpixel((100, 75))[0] > 150  # DCT-scaled by 1/4, still red
    with pytest.raises(ImageTooLargeError, match=r"too large to decode \(800x600, 0 megapixels"):
        load_image(tmp_path / "big.png")
    assert load_image(tmp_path / "big.jpg").size == (200, 150)
