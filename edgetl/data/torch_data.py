"""torch views of a ``DatasetIndex``: a Dataset over samples and the evaluation transform."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.data.preprocess import Preprocess, load_image, preprocess_image, to_rgb

if TYPE_CHECKING:
    from PIL import Image

    from edgetl.data.dataset import Sample


def open_sample(ref: str) -> Image.Image:
    """Open a sample reference (an image path or ``digits:<i>``) as an 8-bit RGB image."""
    if ref.startswith("digits:"):
        from edgetl.data.builtin import open_digit

        return open_digit(int(ref.split(":", 1)[1]))
    return to_rgb(load_image(ref))


def eval_transform(pp: Preprocess) -> Callable[[Image.Image], Any]:
    """PIL image -> CHW float tensor, exactly ``preprocess_image`` (the bundle's and predict's preprocessing)."""
    import torch

    def transform(img: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess_image(img, pp))

    return transform


def make_image_dataset(samples: list[Sample], transform: Callable[[Image.Image], Any]):  # type: ignore[no-untyped-def]
    import torch.utils.data

    class ImageDataset(torch.utils.data.Dataset):
        """(transform(RGB image), label) for each (ref, label) sample."""

        def __init__(self) -> None:
            self.samples = samples
            self.transform = transform

        def __len__(self) -> int:
            return len(self.samples)

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            ref, label = self.samples[i]
            return self.transform(open_sample(ref)), label

    return ImageDataset()


def ImageDataset(samples: list[Sample], transform: Callable[[Image.Image], Any]):  # type: ignore[no-untyped-def]  # noqa: N802
    """A torch ``Dataset`` of ``(transform(image), label)`` (a factory, so torch is imported only when used)."""
    return make_image_dataset(samples, transform)


def iter_eval_batches(
    samples: list[Sample], pp: Preprocess, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """NCHW float32 batches and their labels, for runtimes that take NumPy (ONNX Runtime, OpenVINO)."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images = np.stack([preprocess_image(open_sample(ref), pp) for ref, _ in chunk])
        yield images, np.asarray([label for _, label in chunk], dtype=np.int64)
