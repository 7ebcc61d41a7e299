"""Pluggable training losses: ``loss(inputs, outputs, targets) -> Tensor``, the one signature the trainer calls.

``inputs`` is exactly what the model was called with (a tensor, or a dict of named tensors for text models,
called as ``model(**inputs)``), ``outputs`` the student's logits (N x C) and ``targets`` class indices (N) or soft
targets (N x C probabilities, from MixUp/CutMix). A loss that needs the inputs (distillation: the teacher sees the
same batch) reads them; plain cross-entropy ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from edgetl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


class Loss(Protocol):
    """What the trainer calls once per batch."""

    def __call__(self, inputs: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


class CrossEntropy:
    """Cross-entropy on class indices or on soft targets (``torch.nn.functional.cross_entropy`` takes both).

    Args:
        label_smoothing: in [0, 1); mixes the target with the uniform distribution.
        weight: per-class weights (C values), e.g. inverse class frequencies; None weighs classes equally.

    Raises:
        ConfigError: ``label_smoothing`` outside [0, 1), or a negative class weight.
    """

    def __init__(self, label_smoothing: float = 0.0, weight: Sequence[float] | torch.Tensor | None = None) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if weight is not None and any(float(w) < 0 for w in weight):
            raise ConfigError(f"class weights must be >= 0, got {[float(w) for w in weight]}")
        self.label_smoothing = label_smoothing
        self.weight = weight

    def __call__(self, inputs: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        weight = None
        if self.weight is not None:
            weight = torch.as_tensor(self.weight, dtype=torch.float32, device=outputs.device)
            if weight.numel() != outputs.shape[-1]:
                raise ConfigError(f"{weight.numel()} class weights for a model with {outputs.shape[-1]} classes")
        # float32 logits: under autocast the log-softmax of fp16/bf16 logits loses the small probabilities
        return F.cross_entropy(outputs.float(), targets, weight=weight, label_smoothing=self.label_smoothing)


class DistillationLoss:
    """Knowledge distillation (Hinton et al. 2015) on top of a base loss.

    ``alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * base``. The ``T**2`` keeps
    the soft term's gradients at the scale of the hard term's as ``T`` changes, so ``alpha`` means the same at any
    temperature. The teacher runs in eval mode under ``torch.no_grad()`` on the student's inputs, moved to their
    device on first use; it is never trained and never sees a gradient.

    Args:
        teacher: a model with the student's classes, called like the student (``teacher(x)`` or
            ``teacher(**inputs)``).
        temperature: softening temperature ``T`` > 0 (2-4 is the usual range).
        alpha: weight of the distillation term, in [0, 1]; 0 is the base loss alone.
        base: the loss on the targets; plain cross-entropy by default.

    Raises:
        ConfigError: ``temperature`` <= 0 or ``alpha`` outside [0, 1]; at call time, teacher and student logits of
            different shapes.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.5,
                 base: Loss | None = None) -> None:
        if not temperature > 0:
            raise ConfigError(f"distillation temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher.eval()
        self.temperature = temperature
        self.alpha = alpha
        self.base: Loss = base if base is not None else CrossEntropy()

    def teacher_logits(self, inputs: Any) -> torch.Tensor:
        """The teacher's logits for ``inputs``, in eval mode, without autograd, on the inputs' device."""
        import torch

        device = _device_of(inputs)
        first = next(self.teacher.parameters(), None)
        if first is not None and first.device != device:
            self.teacher.to(device)
        self.teacher.eval()  # again each call: a caller's model.train() may have reached it
        with torch.no_grad():
            return self.teacher(**inputs) if isinstance(inputs, Mapping) else self.teacher(inputs)

    def __call__(self, inputs: Any, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        hard = self.base(inputs, outputs, targets)
        if self.alpha == 0.0:
            return hard  # no teacher pass at all: alpha 0 is exactly the base loss, and costs what it costs
        teacher = self.teacher_logits(inputs)
        if teacher.shape != outputs.shape:
            raise ConfigError(
                f"teacher logits {tuple(teacher.shape)} do not match the student's {tuple(outputs.shape)}",
                hint="the teacher must predict the student's classes (fine-tune it on the same data first)",
            )
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(outputs.float() / t, dim=-1),
            F.log_softmax(teacher.float() / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return self.alpha * t * t * soft + (1.0 - self.alpha) * hard


def _device_of(inputs: Any) -> torch.device:
    import torch

    if isinstance(inputs, torch.Tensor):
        return inputs.device
    if isinstance(inputs, Mapping):
        for value in inputs.values():
            if isinstance(value, torch.Tensor):
                return value.device
    raise ConfigError(f"model inputs must be a tensor or a dict of tensors, got {type(inputs).__name__}")
