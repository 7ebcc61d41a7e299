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


class EvalTransform:
    """PIL image -> CHW float tensor, exactly ``preprocess_image`` (the bundle's and predict's preprocessing)."""

    def __init__(self, pp: Preprocess) -> None:
        self.pp = pp

    def __call__(self, img: Image.Image) -> Any:
        import torch

        return torch.from_numpy(preprocess_image(img, self.pp))


def eval_transform(pp: Preprocess) -> Callable[[Image.Image], Any]:
    """The evaluation transform for ``pp`` (picklable, for DataLoader workers)."""
    return EvalTransform(pp)


class ImageDataset:
    """A map-style dataset of ``(transform(RGB image), label)`` for each ``(ref, label)`` sample.

    A plain class (torch's ``DataLoader`` needs only ``__len__``/``__getitem__``), so it pickles for DataLoader
    workers started with ``spawn``/``forkserver`` and importing it does not import torch.
    """

    def __init__(self, samples: list[Sample], transform: Callable[[Image.Image], Any]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        ref, label = self.samples[i]
        return self.transform(open_sample(ref)), label


def loader_settings(num_workers: int | None) -> dict[str, Any]:
    """DataLoader worker settings: ``num_workers`` (None: min(4, cpu count)) started with ``forkserver``.

    Forking a process that already runs ONNX Runtime, OpenVINO or OpenMP thread pools can crash the child, so
    workers start from a clean server process; they persist across epochs so that start-up is paid once.
    """
    import os

    workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
    if workers == 0:
        return {"num_workers": 0}
    return {"num_workers": workers, "multiprocessing_context": "forkserver", "persistent_workers": True}


def iter_eval_batches(
    samples: list[Sample], pp: Preprocess, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """NCHW float32 batches and their labels, for runtimes that take NumPy (ONNX Runtime, OpenVINO)."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images = np.stack([preprocess_image(open_sample(ref), pp) for ref, _ in chunk])
        yield images, np.asarray([label for _, label in chunk], dtype=np.int64)
