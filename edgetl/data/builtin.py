"""Built-in data sets that need no download, so the default pipeline runs offline on a fresh machine.

``digits``: scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images, 10 classes), served as RGB
images; the usual resize in preprocessing brings them to the model's input size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from edgetl.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from edgetl.config import DataConfig
    from edgetl.data.dataset import DatasetIndex

BUILTIN_DATASETS: Registry[Callable[[DataConfig], DatasetIndex]] = Registry("built-in data set")


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, bunch.target.astype(int)


def open_digit(index: int) -> Image.Image:
    from PIL import Image

    images, _ = _digits_arrays()
    return Image.fromarray(images[index]).convert("RGB")


def _digits(cfg: DataConfig) -> DatasetIndex:
    import sklearn

    from edgetl.data.dataset import DatasetIndex, stratified_split
    from edgetl.fsutil import sha256_json

    _, labels = _digits_arrays()
    samples = [(f"digits:{i}", int(label)) for i, label in enumerate(labels)]
    train, val = stratified_split(samples, cfg.val_ratio, cfg.split_seed)
    splits = {"train": train, "val": val}
    if (test_ratio := cfg.held_out_test_ratio(val_made=True)) > 0:
        splits["train"], splits["test"] = stratified_split(train, test_ratio, cfg.split_seed + 1)
    return DatasetIndex(
        source="digits",
        classes=[str(d) for d in range(10)],
        splits=splits,
        split_made=True,
        split_seed=cfg.split_seed,
        fingerprint=sha256_json(["digits", sklearn.__version__, splits]),
    )


BUILTIN_DATASETS.register("digits", _digits)
