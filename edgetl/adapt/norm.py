"""AdaBN and TENT: adapting the normalisation layers of a model to unlabelled target-domain inputs.

- **AdaBN** (Li et al., 2016): every BatchNorm layer's running mean and variance are re-estimated on the target
  images (a cumulative average over all of them, ``momentum=None``); no weight changes, no labels, no gradient.
- **TENT** (Wang et al., ICLR 2021): the BatchNorm affine parameters (gamma, beta) are trained to minimise the
  entropy of the model's predictions on the target images, with batch statistics in the normalisation layers;
  every other parameter stays frozen. TENT itself adapts online; a deployable model needs fixed statistics, so
  an AdaBN pass with the adapted affine parameters ends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgetl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

Batch = Sequence["torch.Tensor"]  # the model's positional inputs for one batch


@dataclass(frozen=True)
class AdaptReport:
    method: str
    images: int
    layers: int  # BatchNorm layers adapted
    steps: int = 0  # TENT gradient steps
    entropy_before: float | None = None  # TENT: mean prediction entropy (nats) in its first and last pass
    entropy_after: float | None = None


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    from torch import nn

    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _require_batchnorm(model: nn.Module, method: str) -> list[tuple[str, _BatchNorm]]:
    layers = batchnorm_layers(model)
    if not layers:
        raise ConfigError(f"adaptation {method!r} re-estimates BatchNorm layers, and this model has none",
                          hint="adapt a BatchNorm backbone (efficientnet_lite*, resnet*, mobilenet*), or drop "
                               "data.adapt / --adapt-data")
    return layers


def _count(batch: Batch) -> int:
    return int(batch[0].shape[0])


def adabn(model: nn.Module, batches: Iterable[Batch]) -> AdaptReport:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (in place; the weights stay)."""
    import torch

    layers = _require_batchnorm(model, "adabn")
    saved = [(m, m.momentum) for _, m in layers]
    was_training = model.training
    model.eval()
    for _, m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every image counts alike, whatever the batch order
        m.train()
    images = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch)
                images += _count(batch)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    if images == 0:
        raise ConfigError("adabn got no images to adapt on", hint="check the adaptation folder")
    return AdaptReport("adabn", images, len(layers))


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def tent(model: nn.Module, batches: Callable[[], Iterable[Batch]], epochs: int, lr: float,
         momentum: float = 0.9) -> AdaptReport:
    """TENT on the BatchNorm affine parameters for ``epochs`` passes over ``batches()``, then AdaBN (in place).

    ``batches`` is called once per pass (a fresh iterator each time). SGD with momentum, as in the paper.
    """
    import torch

    layers = _require_batchnorm(model, "tent")
    params: list[torch.nn.Parameter] = [p for _, m in layers for p in (m.weight, m.bias) if p is not None]
    if not params:
        raise ConfigError("tent trains the BatchNorm affine parameters, and this model's BatchNorm layers have none",
                          hint="use adapt.method adabn")
    trainable = {id(p) for p in params}
    requires = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    model.eval()
    for _, m in layers:
        m.train()  # batch statistics while adapting, as TENT does; running stats are re-estimated after
    steps = 0
    first = last = None
    try:
        for _ in range(epochs):
            total, n = 0.0, 0
            for batch in batches():
                loss = _entropy(model(*batch)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                total, n = total + float(loss.detach()) * _count(batch), n + _count(batch)
            mean = total / max(1, n)
            first = mean if first is None else first
            last = mean
    finally:
        for p in model.parameters():
            p.requires_grad_(requires[id(p)])
        model.eval()
    report = adabn(model, batches())
    return AdaptReport("tent", report.images, report.layers, steps, first, last)

