"""Data: find and check a data set, split it, and serve it to torch and to the runtimes."""

from edgetl.data.dataset import (
    IMAGE_EXTENSIONS,
    DatasetIndex,
    Sample,
    dataset_fingerprint,
    read_split,
    resolve_dataset,
    stratified_split,
    write_split,
)
from edgetl.data.preprocess import (
    Preprocess,
    image_pixels,
    load_image,
    normalise_pixels,
    preprocess_image,
    to_rgb,
)
from edgetl.data.torch_data import (
    ImageDataset,
    eval_transform,
    iter_eval_batches,
    iter_eval_pixel_batches,
    loader_settings,
    open_sample,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetIndex",
    "ImageDataset",
    "Preprocess",
    "Sample",
    "dataset_fingerprint",
    "eval_transform",
    "image_pixels",
    "iter_eval_batches",
    "iter_eval_pixel_batches",
    "load_image",
    "loader_settings",
    "normalise_pixels",
    "open_sample",
    "preprocess_image",
    "read_split",
    "resolve_dataset",
    "stratified_split",
    "to_rgb",
    "write_split",
]
