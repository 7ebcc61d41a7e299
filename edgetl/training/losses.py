"""Training losses in the one signature the trainer calls: ``loss(inputs, outputs, targets) -> Tensor``.

``inputs`` is exactly what the model was called with (a tensor, or a dict of named tensors called as
``model(**inputs)``), so a loss that needs a second model's view of the batch (a distillation teacher) can run it.
``targets`` are class indices, or soft targets (N x C) after MixUp/CutMix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class TrainLoss(Protocol):
    def __call__(self, inputs: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


class CrossEntropy:
    """Cross-entropy with optional label smoothing and class weights; soft targets work as well."""

    def __init__(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> None:
        import torch

        self.criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def __call__(self, inputs: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.criterion(outputs, targets)
