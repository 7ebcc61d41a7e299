"""Backbone registry: each entry carries what training and deployment need (builder, weights, input, mean/std).

Importing this package registers the built-in backbones. Heavy builders import torch/timm lazily.
"""

from edgetl.backbones import efficientnet_lite, text, tiny, torchvision_models  # noqa: F401  (registers entries)
from edgetl.backbones.base import (
    BACKBONES,
    BackboneSpec,
    Checkpoint,
    create_model,
    get_backbone,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "Checkpoint",
    "create_model",
    "get_backbone",
    "load_checkpoint",
    "save_checkpoint",
]
