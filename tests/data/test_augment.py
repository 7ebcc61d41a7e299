"""Training augmentation: right shape for any input size, seeded, and the same pixel convention as evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgetl.data import Preprocess, preprocess_image
from edgetl.data.augment import train_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(8, 8), (20, 31), (300, 200)])
def test_any_image_size_gives_the_crop_size(size: tuple[int, int]) -> None:
    out = train_transform(32, MEAN, STD)(_noise(*size))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_same_seed_same_augmentation() -> None:
    transform = train_transform(48, MEAN, STD, interpolation="bicubic")
    img = _noise(100, 80)
    torch.manual_seed(5)
    a = transform(img)
    torch.manual_seed(5)
    b = transform(img)
    torch.manual_seed(6)
    c = transform(img)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_without_augmentation_pixels_match_the_evaluation_preprocessing() -> None:
    img = Image.new("RGB", (40, 40), (200, 120, 30))  # a flat image: every crop and resize gives the same pixels
    train = train_transform(32, MEAN, STD, min_crop_scale=1.0, hflip=False, color_jitter=0.0)(img)
    evaluation = preprocess_image(img, Preprocess.make(32, 0.875, MEAN, STD, "bilinear"))
    np.testing.assert_allclose(train.numpy(), evaluation, atol=1e-5)


@pytest.mark.parametrize("policy", ["trivial", "randaugment"])
def test_policy_augmentation_changes_pixels_and_keeps_the_shape(policy: str) -> None:
    img = _noise(64, 48)
    plain = train_transform(32, MEAN, STD, min_crop_scale=1.0, hflip=False, color_jitter=0.0)
    policed = train_transform(32, MEAN, STD, min_crop_scale=1.0, hflip=False, color_jitter=0.0, auto_augment=policy)
    outs = []
    for seed in range(8):  # TrivialAugment may draw its identity op: some seed must change the image
        torch.manual_seed(seed)
        outs.append(policed(img))
    assert all(o.shape == (3, 32, 32) and torch.isfinite(o).all() for o in outs)
    assert any(not torch.allclose(o, plain(img)) for o in outs)


def test_random_erasing_blanks_a_box_to_the_normalised_mean() -> None:
    img = Image.new("RGB", (40, 40), (255, 255, 255))  # white: far from the mean everywhere
    torch.manual_seed(0)
    out = train_transform(32, MEAN, STD, min_crop_scale=1.0, hflip=False, color_jitter=0.0, random_erasing=1.0)(img)
    erased = (out == 0).all(dim=0)
    assert 0 < erased.sum() < 32 * 32


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="auto_augment"):
        train_transform(32, MEAN, STD, auto_augment="autoaugment-imagenet")
