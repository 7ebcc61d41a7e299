"""Deterministic evaluation preprocessing, shared by every stage, the bundle and ``edgetl predict``.

One implementation (PIL + NumPy) so the accuracy a report states is the accuracy a bundle delivers. It is written
to ``preprocess.json`` in the bundle, so a C++ or device implementation can repeat it exactly:
convert to RGB -> resize the short side to ``resize_size`` -> centre-crop ``image_size`` -> scale to 0..1 ->
``(x - mean) / std`` -> CHW float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from edgetl.errors import DataError

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


class Preprocess(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(ge=8)
    resize_size: int = Field(ge=8)  # short side before the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    channel_order: Literal["RGB"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    scale: float = 1.0 / 255.0  # uint8 pixels -> 0..1 before mean/std

    @classmethod
    def make(cls, image_size: int, crop_pct: float, mean, std, interpolation: str) -> Preprocess:  # type: ignore[no-untyped-def]
        """The usual eval transform: resize the short side to image_size / crop_pct, centre-crop image_size."""
        return cls(
            image_size=image_size,
            resize_size=max(image_size, int(round(image_size / crop_pct))),
            mean=tuple(mean),
            std=tuple(std),
            interpolation=interpolation,  # type: ignore[arg-type]  # validated by pydantic
        )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode PIL opens (L, LA, P, RGBA, CMYK, I;16, I, F) -> 8-bit RGB. Alpha is composited on black."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros(arr.shape, dtype=np.float64)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_and_crop(img: Image.Image, pp: Preprocess) -> Image.Image:
    w, h = img.size
    scale = pp.resize_size / min(w, h)
    new_w, new_h = max(pp.image_size, round(w * scale)), max(pp.image_size, round(h * scale))
    img = img.resize((new_w, new_h), _RESAMPLE[pp.interpolation])
    left, top = (new_w - pp.image_size) // 2, (new_h - pp.image_size) // 2
    return img.crop((left, top, left + pp.image_size, top + pp.image_size))


def image_pixels(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """One image -> its resized, centre-cropped RGB pixels: uint8, HWC (what the uint8-input model variant takes)."""
    return np.ascontiguousarray(np.asarray(resize_and_crop(to_rgb(img), pp), dtype=np.uint8))


def normalise_pixels(pixels: np.ndarray, pp: Preprocess) -> np.ndarray:
    """uint8 HWC pixels -> float32 CHW: ``(pixels * scale - mean) / std``, in float32, in this order (the
    uint8-input variant's graph repeats these operations one by one, so both inputs give the same floats)."""
    arr: np.ndarray = np.asarray(pixels, dtype=np.float32) * np.float32(pp.scale)
    arr = (arr - np.asarray(pp.mean, dtype=np.float32)) / np.asarray(pp.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess_image(img: Image.Image, pp: Preprocess) -> np.ndarray:
    """One image -> float32 array of shape (3, image_size, image_size)."""
    return normalise_pixels(image_pixels(img, pp), pp)


# Large images: a JPEG over DRAFT_ABOVE_PIXELS is decoded at a reduced scale (libjpeg's DCT scaling by 1/2, 1/4
# or 1/8) that keeps its short side at least DRAFT_SHORT_SIDE pixels, far above any input size edgetl trains at,
# so a 100-megapixel photo costs tens of MB instead of gigabytes. Any other image over MAX_PIXELS (PIL's own
# decompression-bomb limit, about 89.5 MP) is refused as too large.
DRAFT_ABOVE_PIXELS = 24_000_000
DRAFT_SHORT_SIDE = 2048
MAX_PIXELS = 89_478_485


class ImageTooLargeError(DataError):
    """An image over ``MAX_PIXELS`` that cannot be decoded at a reduced scale."""


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image (so truncation surfaces here, not later). Raises ``DataError``.

    Large JPEGs are decoded at a reduced scale and other images over ``MAX_PIXELS`` are refused
    (``ImageTooLargeError``): see ``DRAFT_ABOVE_PIXELS``.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            # edgetl applies its own limit below; PIL's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > DRAFT_ABOVE_PIXELS and im.format == "JPEG":
                    scale = DRAFT_SHORT_SIDE / min(w, h)
                    im.draft(None, (max(1, int(w * scale)), max(1, int(h * scale))))
                    w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageTooLargeError(
                        f"cannot read image {path}: too large to decode ({w}x{h}, {w * h / 1e6:.0f} megapixels; "
                        f"the limit is {MAX_PIXELS / 1e6:.1f} megapixels, JPEGs excepted)",
                        hint="downscale the image, or save it as a JPEG (decoded at a reduced scale)")
                im.load()
                return im.copy()
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"cannot read image {path}: too large to decode ({exc})",
                                 hint="downscale the image") from exc
    except Exception as exc:  # PIL raises many types for bad files; all mean "unreadable"
        raise DataError(f"cannot read image {path}: {exc}", hint="remove or replace the file") from exc
