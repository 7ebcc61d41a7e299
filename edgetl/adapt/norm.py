"""AdaBN and TENT: adapting the normalisation layers of a model to unlabelled target-domain inputs.

- **AdaBN** (Li et al., 2016): every BatchNorm layer's running mean and variance are re-estimated on the target
  images (a cumulative average over all of them, ``momentum=None``); no weight changes, no labels, no gradient.
- **Source-anchored AdaBN** (``adabn(..., source=...)``, what the adapt stage runs). Plain AdaBN assumes that a
  layer's running statistics are those of the source (training) images, so that normalising each domain by its own
  statistics aligns them. That fails where the statistics are someone else's: a frozen backbone keeps ImageNet's,
  and a head trained on it learned features normalised by ImageNet's statistics, not by the training images'.
  Plain AdaBN then moves even clean images off what the head learned (hymenoptera, head-only model: clean test
  88.3 % -> 68.3 %, benchmarks/reported/shift_hymenoptera.json). The anchored form matches each layer's target
  input moments to the source input moments *as the model normalises them*: with source moments (mu_s, s_s) measured
  on training images through the unadapted model, target moments (mu_t, s_t), and the layer's (m, v),
  ``v' + eps = (v + eps) * s_t^2 / s_s^2`` and ``m' = mu_t - (mu_s - m) * s_t / s_s``. Target images distributed
  like the source leave the layer as it was; where (m, v) are the source's own moments (a fully fine-tuned model)
  it is plain AdaBN.
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
    source_images: int = 0  # anchored AdaBN: the training images its anchor moments came from (0: plain)


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


def adabn(model: nn.Module, batches: Iterable[Batch], source: Iterable[Batch] | None = None) -> AdaptReport:
    """Re-estimate every BatchNorm layer's running statistics on ``batches`` (in place; the weights stay).

    With ``source`` (batches of training images, deployment preprocessing), the statistics are anchored to the
    source images' moments (the module docstring); without, plain AdaBN.
    """
    import torch

    layers = _require_batchnorm(model, "adabn")
    if source is not None:
        return _anchored_adabn(model, layers, batches, source)
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


class _Moments:
    """Per-channel running sums of a BatchNorm layer's input (float64), over batch and spatial positions."""

    def __init__(self) -> None:
        self.n = 0
        self.sum: torch.Tensor | None = None
        self.sq: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        x64 = x.detach().double()
        s, q = x64.sum(dims), (x64 * x64).sum(dims)
        self.sum = s if self.sum is None else self.sum + s
        self.sq = q if self.sq is None else self.sq + q
        self.n += x.numel() // x.shape[1]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.sum is not None and self.sq is not None and self.n > 1
        mean = self.sum / self.n
        return mean, (self.sq / self.n - mean * mean).clamp_min(0) * (self.n / (self.n - 1))


def _regroup(batches: Iterable[Batch], size: int) -> list[Batch]:
    """The batches joined and split again into near-equal batches of at most ``size`` images.

    The anchored pass normalises each batch by its own moments; over a few images those are noisy, and the noise
    compounds through the layers (lite0 at 128 px, target = source, batches of 25: 10 % of predictions changed; one
    batch of 100: none).
    """
    import torch

    given = list(batches)
    if not given:
        return []
    joined = [torch.cat(parts) for parts in zip(*given, strict=True)]
    pieces = -(-int(joined[0].shape[0]) // size)
    return list(zip(*(t.tensor_split(pieces) for t in joined), strict=True))


def _anchored_adabn(model: nn.Module, layers: list[tuple[str, _BatchNorm]], target: Iterable[Batch],
                    source: Iterable[Batch], chunk: int = 256) -> AdaptReport:
    import torch

    batches = _regroup(target, chunk)

    was_training = model.training
    model.eval()
    src = {name: _Moments() for name, _ in layers}
    hooks = [m.register_forward_pre_hook(lambda _m, args, acc=src[name]: acc.add(args[0])) for name, m in layers]
    source_images = 0
    try:
        with torch.no_grad():
            for batch in source:  # the unadapted model, as the head saw the training images
                model(*batch)
                source_images += _count(batch)
    finally:
        for h in hooks:
            h.remove()
    if src[layers[0][0]].n <= 1:
        model.train(was_training)
        raise ConfigError("source-anchored adabn got no source images", hint="check the training split")
    anchors = {}
    for name, m in layers:
        assert m.running_mean is not None and m.running_var is not None
        mu_s, var_s = src[name].mean_var()
        scale_s = (var_s + m.eps).sqrt()  # the source input's spread (eps keeps a dead channel finite)
        # the source input as the layer normalises it: (x - m) / sqrt(v + eps) has mean `shift`, spread `spread`
        denom = (m.running_var.double() + m.eps).sqrt()
        anchors[name] = (scale_s, (mu_s - m.running_mean.double()) / denom, scale_s / denom)

    # one pass over the target images: each layer normalises its batch by the batch's own moments and maps it onto
    # the source's normalised moments (what the adapted layer will do with the accumulated target moments), so
    # every layer sees its input as the adapted model upstream produces it. The layer runs its own forward (timm's
    # BatchNormAct2d adds its activation there) in eval mode, with running statistics set per batch to do that
    # mapping: (x - mean) / sqrt(var + eps) * spread + shift == (x - rm) / sqrt(rv + eps)
    tgt = {name: _Moments() for name, _ in layers}
    saved = {name: (m.running_mean.clone(), m.running_var.clone()) for name, m in layers}  # type: ignore[union-attr]

    def per_batch(name: str, m: _BatchNorm, x: torch.Tensor) -> None:
        tgt[name].add(x)
        if x.numel() // x.shape[1] <= 1:  # one value per channel has no spread: normalise as the layer did
            m.running_mean.copy_(saved[name][0])  # type: ignore[union-attr]
            m.running_var.copy_(saved[name][1])  # type: ignore[union-attr]
            return
        dims = [0, *range(2, x.dim())]
        x64 = x.detach().double()
        mean, var = x64.mean(dims), x64.var(dims, unbiased=False)
        _, shift, spread = anchors[name]
        scale = (var + m.eps).sqrt() / spread  # sqrt(rv + eps)
        m.running_var.copy_((scale * scale - m.eps).to(m.running_var.dtype))  # type: ignore[union-attr]
        m.running_mean.copy_((mean - shift * scale).to(m.running_mean.dtype))  # type: ignore[union-attr]

    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: per_batch(name, m, args[0]))
             for name, m in layers]
    images = 0
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch)
                images += _count(batch)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for name, m in layers:
                m.running_mean.copy_(saved[name][0])  # type: ignore[union-attr]
                m.running_var.copy_(saved[name][1])  # type: ignore[union-attr]
        model.train(was_training)
    if images == 0:
        raise ConfigError("adabn got no images to adapt on", hint="check the adaptation folder")

    with torch.no_grad():
        for name, m in layers:
            scale_s, shift, _ = anchors[name]
            mu_t, var_t = tgt[name].mean_var()
            ratio = (var_t + m.eps).sqrt() / scale_s  # s_t / s_s
            denom = (saved[name][1].double() + m.eps).sqrt()
            # v' + eps = (v + eps) s_t^2 / s_s^2;  m' = mu_t - (mu_s - m) s_t / s_s
            m.running_mean.copy_((mu_t - shift * denom * ratio).to(m.running_mean.dtype))  # type: ignore[union-attr]
            m.running_var.copy_(((denom * ratio) ** 2 - m.eps).clamp_min(0).to(m.running_var.dtype))  # type: ignore[union-attr]
    return AdaptReport("adabn", images, len(layers), source_images=source_images)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1)


def tent(model: nn.Module, batches: Callable[[], Iterable[Batch]], epochs: int, lr: float,
         momentum: float = 0.9, source: Iterable[Batch] | None = None) -> AdaptReport:
    """TENT on the BatchNorm affine parameters for ``epochs`` passes over ``batches()``, then AdaBN (in place;
    anchored to ``source`` when given).

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
    report = adabn(model, batches(), source)
    return AdaptReport("tent", report.images, report.layers, steps, first, last, report.source_images)

