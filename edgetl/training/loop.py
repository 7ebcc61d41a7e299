"""One training epoch, one evaluation pass, the LR schedule and layer freezing, device- and DDP-agnostic."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgetl.training.distributed import DistContext, all_reduce_sum

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgetl.backbones import BackboneSpec

# progress(done_steps, running_loss, running_accuracy): called after every step (rank 0 draws a bar with it);
# None for a figure that is not measured
ProgressFn = Callable[[int, float | None, float | None], None]
# (images, class indices) -> (mixed images, soft targets N x C)
BatchMix = Callable[["torch.Tensor", "torch.Tensor"], tuple["torch.Tensor", "torch.Tensor"]]


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    count: int
    per_class_correct: list[int] = field(default_factory=list)
    per_class_total: list[int] = field(default_factory=list)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up from ~0 to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _classifier_param_ids(model: nn.Module, spec: BackboneSpec) -> set[int]:
    return {id(p) for p in model.get_submodule(spec.classifier).parameters()}


def set_trainable(model: nn.Module, spec: BackboneSpec, unfreeze: str | int | None) -> None:
    """Freeze the model except the classifier (``unfreeze=None``), the last N blocks and after, or all.

    "The last N blocks" are the last N children with parameters of ``spec.blocks`` (the classifier excluded);
    everything registered after the first of them (the final conv, the norm, the classifier) trains too.
    """
    head = _classifier_param_ids(model, spec)
    params = list(model.parameters())
    if unfreeze == "all":
        first_trainable = 0
    elif unfreeze is None or unfreeze == 0:
        first_trainable = len(params)
    else:
        container = model if not spec.blocks else model.get_submodule(spec.blocks)
        blocks = [
            c for c in container.children()
            if any(True for _ in c.parameters()) and not any(id(p) in head for p in c.parameters())
        ]
        n = int(unfreeze)
        if n >= len(blocks):
            first_trainable = 0
        else:
            first_param = next(blocks[-n].parameters())
            first_trainable = next(i for i, p in enumerate(params) if p is first_param)
    for i, p in enumerate(params):
        p.requires_grad_(i >= first_trainable or id(p) in head)


def frozen_norm_layers(model: nn.Module, every: bool = False) -> list[nn.Module]:
    """BatchNorm layers whose parameters are all frozen (or ``every`` one): they stay in eval mode while training,
    so their statistics stay put."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return [
        m for m in model.modules()
        if isinstance(m, _BatchNorm) and (every or not any(p.requires_grad for p in m.parameters(recurse=False)))
    ]


def param_groups(
    model: nn.Module, spec: BackboneSpec, *, head_lr: float, backbone_lr: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: classifier vs backbone learning rate; no weight decay on biases and norm weights (1-D)."""
    head = _classifier_param_ids(model, spec)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head, p.ndim > 1), []).append(p)
    return [
        {"params": ps, "lr": head_lr if is_head else backbone_lr, "weight_decay": weight_decay if decay else 0.0,
         "name": f"{'head' if is_head else 'backbone'}{'' if decay else '_no_decay'}"}
        for (is_head, decay), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], not kv[0][1]))
    ]


def to_device(inputs: Any, device: torch.device, channels_last: bool = False) -> Any:
    """A batch's inputs (a tensor, or a dict of named tensors) on ``device``; 4-D tensors optionally channels-last."""
    import torch

    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.ndim == 4 else t

    return {k: move(v) for k, v in inputs.items()} if isinstance(inputs, dict) else move(inputs)


def call_model(model: nn.Module, inputs: Any) -> torch.Tensor:
    """``model(**inputs)`` for named inputs, ``model(inputs)`` for one tensor."""
    return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def batch_size_of(inputs: Any) -> int:
    return int(next(iter(inputs.values())).shape[0]) if isinstance(inputs, dict) else int(inputs.shape[0])


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Any, torch.Tensor]],
    loss_fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    dist: DistContext,
    frozen_norms: list[nn.Module] = (),  # type: ignore[assignment]
    max_steps: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    after_step: Callable[[], None] | None = None,
    before_step: Callable[[int], None] | None = None,
    train_mode: Callable[[nn.Module], None] | None = None,
    mix: BatchMix | None = None,
    progress: ProgressFn | None = None,
) -> EpochStats:
    """One pass over ``loader``; the scheduler steps per batch. Loss and accuracy are summed over all processes.

    ``loss_fn(inputs, logits, targets)`` is the pluggable loss (``edgetl.training.losses``). ``autocast_dtype``
    runs the forward pass in mixed precision (float16 with a ``scaler`` on CUDA, bfloat16 on CPU);
    ``before_step(i)`` runs before step ``i`` (QAT freezes BatchNorm there), ``after_step`` after every optimizer
    step (the weight EMA's update); ``train_mode`` replaces ``model.train()`` (PT2E graphs); ``mix`` mixes each
    batch (MixUp/CutMix: soft targets; the accuracy counts a hit on the largest share).
    """
    import torch

    if train_mode is not None:
        train_mode(model)
    else:
        model.train()
    for m in frozen_norms:
        m.eval()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, count
    for step, (inputs, labels) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        if before_step is not None:
            before_step(step)
        inputs = to_device(inputs, device, channels_last)
        labels = labels.to(device, non_blocking=True)
        targets = labels
        if mix is not None:
            inputs, targets = mix(inputs, labels)
            labels = targets.argmax(1)
            inputs = to_device(inputs, device, channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            logits = call_model(model, inputs)
            loss = loss_fn(inputs, logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            with warnings.catch_warnings():
                # a float16 step the scaler skipped (inf gradients) still advances the schedule: intended
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                scheduler.step()
        if after_step is not None:
            after_step()
        n = labels.shape[0]
        totals += torch.tensor([loss.item() * n, (logits.argmax(1) == labels).sum().item(), n], dtype=torch.float64)
        if progress is not None:
            progress(step + 1, totals[0].item() / totals[2].item(), totals[1].item() / totals[2].item())
    all_reduce_sum(dist, totals)
    count = int(totals[2].item())
    return EpochStats(loss=totals[0].item() / max(1, count), accuracy=totals[1].item() / max(1, count), count=count)


def batch_mix(num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> BatchMix | None:
    """torchvision's MixUp and/or CutMix (one of the two per batch when both are on); None when both are 0."""
    from torchvision.transforms import v2

    mixes = ([v2.MixUp(num_classes=num_classes, alpha=mixup_alpha)] if mixup_alpha > 0 else []) + (
        [v2.CutMix(num_classes=num_classes, alpha=cutmix_alpha)] if cutmix_alpha > 0 else [])
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)  # type: ignore[return-value]


def autocast_dtype_for(device: torch.device, amp: bool, cpu_bf16: bool = False) -> torch.dtype | None:
    """The mixed-precision type for training on ``device``, or None for float32.

    CUDA: float16 (with a grad scaler) when ``amp``. CPU: bfloat16 when ``cpu_bf16`` and the CPU computes it
    natively (AVX512-BF16 or AMX, as oneDNN reports); elsewhere bfloat16 is emulated and slower than float32.
    """
    import torch

    if device.type == "cuda":
        return torch.float16 if amp else None
    if device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_has_native_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(
            torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # private probes: a torch without them gets float32
        return False


class WeightEMA:
    """Exponential moving average of a model's weights and BatchNorm statistics (timm's ``ModelEmaV3``).

    The horizon is given in optimizer steps: ``decay = 1 - 1 / horizon_steps``; it ramps up as
    ``(1 + n) / (10 + n)`` over the first updates so the average is not anchored to the starting weights.
    """

    def __init__(self, model: nn.Module, horizon_steps: float) -> None:
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(model, decay=1.0 - 1.0 / max(1.0, horizon_steps))
        self.max_decay = self.ema.decay
        self.updates = 0

    @property
    def module(self) -> nn.Module:
        return self.ema.module

    def update(self, model: nn.Module) -> None:
        self.ema.decay = min(self.max_decay, (1 + self.updates) / (10 + self.updates))
        self.ema.update(model)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.ema.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Any, torch.Tensor]],
    num_classes: int,
    device: torch.device,
    *,
    dist: DistContext,
    channels_last: bool = False,
    progress: ProgressFn | None = None,
) -> EpochStats:
    """Cross-entropy (no smoothing) and accuracy, overall and per class, summed over all processes."""
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum = torch.zeros(1, dtype=torch.float64)
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    with torch.inference_mode():
        for step, (inputs, labels) in enumerate(loader):
            inputs = to_device(inputs, device, channels_last)
            labels = labels.to(device, non_blocking=True)
            logits = call_model(model, inputs).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            hits = (logits.argmax(1) == labels).double().cpu()
            labels_cpu = labels.cpu()
            correct.index_add_(0, labels_cpu, hits)
            total.index_add_(0, labels_cpu, torch.ones_like(hits))
            if progress is not None:
                seen = total.sum().item()
                progress(step + 1, loss_sum.item() / seen, correct.sum().item() / seen)
    stacked = all_reduce_sum(dist, torch.cat([loss_sum, correct, total]))
    loss_sum, correct, total = stacked[:1], stacked[1 : 1 + num_classes], stacked[1 + num_classes :]
    count = int(total.sum().item())
    return EpochStats(
        loss=loss_sum.item() / max(1, count),
        accuracy=correct.sum().item() / max(1, count),
        count=count,
        per_class_correct=[int(c) for c in correct.tolist()],
        per_class_total=[int(t) for t in total.tolist()],
    )
