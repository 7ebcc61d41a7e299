"""A tiny conv net for fast tests: a few thousand parameters, any input size, conv + BN + ReLU like real nets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgetl.backbones.base import BackboneSpec, load_matching, load_state_dict_file, register_backbone

if TYPE_CHECKING:
    from torch import nn


_CLASS: dict[str, Any] = {}


def _tiny_net_class() -> Any:
    """The module-level ``TinyNet`` class (defined on first use, so importing edgetl does not import torch)."""
    if "TinyNet" in _CLASS:
        return _CLASS["TinyNet"]
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class _TinyNet(nn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.blocks = nn.Sequential(block(3, 8, 2), block(8, 16, 2), block(16, 32, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.classifier = nn.Linear(32, num_classes)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.classifier(self.flatten(self.pool(self.blocks(x))))

    # a whole saved module (a model artifact) is unpickled by its qualified name: it must resolve here
    _TinyNet.__name__ = _TinyNet.__qualname__ = "TinyNet"
    _TinyNet.__module__ = __name__
    _CLASS["TinyNet"] = _TinyNet
    return _TinyNet


def __getattr__(name: str) -> Any:  # unpickling looks the class up as edgetl.backbones.tiny.TinyNet
    if name == "TinyNet":
        return _tiny_net_class()
    raise AttributeError(name)


def _build(num_classes: int, weights: str) -> nn.Module:
    model = _tiny_net_class()(num_classes)
    if weights not in ("none", "default"):
        load_matching(model, load_state_dict_file(weights), weights, skip_prefix="classifier.")
    return model


register_backbone(
    BackboneSpec(
        name="tiny",
        build=_build,
        classifier="classifier",
        blocks="blocks",
        input_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="3-block conv net for tests (random init; 'default' weights are none)",
        pretrained=False,
    )
)
