"""Training-time augmentation. Evaluation never uses it: it goes through ``preprocess.preprocess_image`` only.

The output matches the evaluation transform's convention (RGB, 0..1 pixels, ``(x - mean) / std``, CHW float32),
so the only difference a model sees between training and evaluation is the augmentation itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from edgetl.config import TrainConfig
    from edgetl.data.preprocess import Preprocess


def train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    interpolation: str = "bilinear",
    min_crop_scale: float = 0.25,
    hflip: bool = True,
    color_jitter: float = 0.2,
    resize_size: int | None = None,
    auto_augment: str = "none",
    random_erasing: float = 0.0,
) -> Callable[[Image.Image], Any]:
    """PIL RGB image -> augmented CHW float tensor of ``image_size`` x ``image_size``.

    Random-resized crop (area ``min_crop_scale``..1, aspect 3/4..4/3), optional horizontal flip, light
    brightness/contrast/saturation jitter, then normalisation. Images whose short side is below ``resize_size``
    (default ``image_size``) are first enlarged to it, so the crop box of a tiny image (8x8 digits, 32 px icons)
    is not quantised to a few whole pixels.

    Args:
        image_size: output side in pixels.
        mean, std: per-channel normalisation on 0..1 pixels (the backbone's).
        interpolation: "bilinear", "bicubic" or "nearest" (the backbone's).
        min_crop_scale: smallest crop area as a fraction of the image.
        hflip: flip horizontally with probability 0.5.
        color_jitter: strength of brightness/contrast/saturation jitter; 0 turns it off.
        resize_size: short side small images are enlarged to before cropping.
        auto_augment: "none", "trivial" (TrivialAugmentWide) or "randaugment" (RandAugment, 2 ops, magnitude 9),
            applied after the crop, flip and jitter.
        random_erasing: probability of erasing one random box (after normalisation, so it is erased to the mean).
    """
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST}[interpolation]
    floor = resize_size or image_size
    steps: list[Any] = [
        _EnlargeSmall(floor, mode),
        T.RandomResizedCrop(image_size, scale=(min_crop_scale, 1.0), interpolation=mode, antialias=True),
    ]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if color_jitter > 0:
        steps.append(T.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    if auto_augment == "trivial":
        steps.append(T.TrivialAugmentWide(interpolation=mode))
    elif auto_augment == "randaugment":
        steps.append(T.RandAugment(num_ops=2, magnitude=9, interpolation=mode))
    elif auto_augment != "none":
        raise ValueError(f"unknown auto_augment {auto_augment!r}; expected 'none', 'trivial' or 'randaugment'")
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    if random_erasing > 0:
        steps.append(T.RandomErasing(p=random_erasing, value=0))
    return T.Compose(steps)


class _EnlargeSmall:
    """Resize so the short side is at least ``size``; larger images pass through untouched."""

    def __init__(self, size: int, mode: Any) -> None:
        self.size = size
        self.mode = mode

    def __call__(self, img: Image.Image) -> Image.Image:
        from torchvision.transforms import functional as F

        if min(img.size) >= self.size:
            return img
        return F.resize(img, self.size, interpolation=self.mode, antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def train_transform_for(train: TrainConfig, pp: Preprocess) -> Callable[[Image.Image], Any]:
    """The training augmentation a ``TrainConfig`` asks for, around the model's evaluation preprocessing ``pp``.

    Fine-tuning and QAT both use it, so QAT sees the distribution fine-tuning saw.
    """
    return train_transform(pp.image_size, pp.mean, pp.std, interpolation=pp.interpolation,
                           min_crop_scale=train.min_crop_scale, hflip=train.hflip, color_jitter=train.color_jitter,
                           resize_size=pp.resize_size, auto_augment=train.auto_augment,
                           random_erasing=train.random_erasing)
