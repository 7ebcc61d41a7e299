"""Accuracy-aware int8: per-layer sensitivity and the float fallback loop, independent of how a model is quantized.

The method only needs an ``evaluate(float_layers) -> Evaluation`` callable: the accuracy (and the output error
against the float model) of the int8 model with exactly those layers reverted to float, on the validation split.
How a layer is reverted is the backend's business (PT2E: ``edgetl.quant.mixed``), so the same method can serve
another quantizer or runtime (the split NNCF keeps between ``algorithm`` and ``*_backend``).

* Sensitivity: each quantized layer reverted alone. The gain in accuracy is the ground truth; the drop of the
  logit mean squared error against the float model is a cheaper, finer signal (it separates layers whose revert
  flips no image on a small split). Layers are ranked by accuracy gain, then by error drop; the Spearman rank
  correlation of the two is recorded so that the proxy is checked on every run rather than assumed.
* Fallback: while the int8 model misses the budget, the next most sensitive layer is added to the float set and
  the model is revalidated; it stops when the budget holds, or at the cap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgetl.errors import ConfigError, DataError, EdgetlError


@dataclass(frozen=True)
class Layer:
    """One quantized compute layer (or coupled group) that can be reverted to float."""

    name: str  # module path, e.g. "blocks.3.1.conv_dw"
    kind: str  # conv | linear
    node: str = ""  # backend handle (PT2E: the graph node name)


@dataclass(frozen=True)
class Evaluation:
    """An int8 model's figures on the validation split."""

    accuracy: float  # top-1, 0..1
    logit_mse: float  # mean squared logit error against the float model


@dataclass
class LayerSensitivity:
    layer: str
    kind: str
    accuracy_reverted: float  # top-1 with this layer alone in float
    accuracy_gain: float  # points gained by reverting it alone
    logit_mse_reverted: float
    mse_drop: float  # logit MSE removed by reverting it alone (the proxy)


@dataclass
class Sensitivity:
    """Every layer's sensitivity, most sensitive first, with the base figures and the proxy's rank correlation."""

    base: Evaluation
    rows: list[LayerSensitivity]
    images: int
    proxy_spearman: float | None  # rank correlation of mse_drop with accuracy_gain; None when undefined
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"base_accuracy": self.base.accuracy, "base_logit_mse": self.base.logit_mse, "images": self.images,
                "proxy": "logit MSE drop vs accuracy gain (Spearman)", "proxy_spearman": self.proxy_spearman,
                "wall_time_s": self.wall_time_s, "layers": [asdict(r) for r in self.rows]}


@dataclass
class FallbackStep:
    float_layers: list[str]  # the layers in float after this step (cumulative)
    accuracy: float
    drop_points: float  # fp32 - int8, in accuracy points
    within_budget: bool
    latency: dict[str, Any] = field(default_factory=dict)  # filled by whoever measures it (benchmarks)


@dataclass
class FallbackResult:
    """The fallback loop's outcome: every step (step 0: all layers int8) and the chosen float set."""

    fp32_accuracy: float
    max_drop_points: float
    steps: list[FallbackStep]
    cap: int
    status: str  # "not needed" | "budget met" | "cap reached"
    message: str

    @property
    def float_layers(self) -> list[str]:
        return list(self.steps[-1].float_layers)

    def as_dict(self) -> dict[str, Any]:
        return {"fp32_accuracy": self.fp32_accuracy, "max_drop_points": self.max_drop_points, "cap": self.cap,
                "status": self.status, "message": self.message, "float_layers": self.float_layers,
                "steps": [asdict(s) for s in self.steps]}


# --------------------------------------------------------------------------------------------------- checks
def min_rank_images(max_drop_points: float) -> int:
    """The smallest split on which one image weighs no more than the budget (100 / budget images)."""
    return math.ceil(100.0 / max_drop_points) if max_drop_points > 0 else math.inf  # type: ignore[return-value]


def check_inputs(images: int, max_drop_points: float, cap: int, fp32_vs_itself: float, where: str) -> None:
    """Refuse inputs the fallback cannot work with, each with its own message.

    Args:
        images: size of the validation split.
        max_drop_points: the target's budget, in accuracy points.
        cap: the most layers the config lets the loop revert.
        fp32_vs_itself: the float model's accuracy drop against itself on the same batches (must be 0).
        where: the config field or file to name in messages.
    """
    if cap < 1:
        raise ConfigError(f"{where}.max_float_layers is {cap}: the fallback may revert no layer, so it cannot help",
                          hint=f"set {where}.max_float_layers to 1 or more, or {where}.enabled: false")
    if max_drop_points <= 0:
        raise ConfigError(f"the target's budgets.max_accuracy_drop is {max_drop_points:g}: only the float model "
                          "itself meets a zero budget, so no int8 model can",
                          hint="set a budget above 0 in the target profile, or turn the fallback off")
    if abs(fp32_vs_itself) > 1e-9:
        raise EdgetlError(f"the float model scores {fp32_vs_itself:+.2f} points against itself on the same "
                        "validation batches (fp32 vs fp32 must be 0): the evaluation is not deterministic, an "
                        "evaluation error rather than a quantization one", hint="report this as a bug")
    needed = min_rank_images(max_drop_points)
    if images < needed:
        raise DataError(f"the validation split has {images} images: too few to rank layers against a "
                        f"{max_drop_points:g}-point budget (one image weighs {100 / max(1, images):.2f} points; "
                        f"needs at least {needed})",
                        hint="add validation images (data.val_ratio, or a val/ folder) or turn the fallback off")


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    value = float(spearmanr(a, b).statistic)
    return None if math.isnan(value) else round(value, 4)


# --------------------------------------------------------------------------------------------------- the method
def rank_layers(layers: Sequence[Layer], evaluate: Callable[[frozenset[str]], Evaluation],
                images: int, progress: Callable[[int, int], None] | None = None) -> Sensitivity:
    """Revert each layer alone and measure it; the most sensitive layer first."""
    import time

    started = time.perf_counter()
    base = evaluate(frozenset())
    rows = []
    for i, layer in enumerate(layers):
        e = evaluate(frozenset({layer.name}))
        rows.append(LayerSensitivity(layer.name, layer.kind, e.accuracy, round(100 * (e.accuracy - base.accuracy), 4),
                                     e.logit_mse, base.logit_mse - e.logit_mse))
        if progress is not None:
            progress(i + 1, len(layers))
    spearman = _spearman([r.accuracy_gain for r in rows], [r.mse_drop for r in rows])
    rows.sort(key=lambda r: (-r.accuracy_gain, -r.mse_drop))
    return Sensitivity(base, rows, images, spearman, round(time.perf_counter() - started, 2))


def fallback(sensitivity: Sensitivity, evaluate: Callable[[frozenset[str]], Evaluation], fp32_accuracy: float,
             max_drop_points: float, cap: int) -> FallbackResult:
    """Revert the most sensitive layers one at a time, revalidating each step, until the budget holds or the cap.

    Step 0 is the all-int8 model (``sensitivity.base``); step k has the k most sensitive layers in float.
    """
    def step(names: list[str], accuracy: float) -> FallbackStep:
        drop = round(100 * (fp32_accuracy - accuracy), 4)
        return FallbackStep(list(names), accuracy, drop, drop <= max_drop_points + 1e-9)

    steps = [step([], sensitivity.base.accuracy)]
    if steps[0].within_budget:
        return FallbackResult(fp32_accuracy, max_drop_points, steps, cap, "not needed",
                              f"int8 is within the {max_drop_points:g}-point budget ({steps[0].drop_points:+.2f} "
                              "points): the fallback reverts nothing")
    order = [r.layer for r in sensitivity.rows]
    chosen: list[str] = []
    for name in order[:cap]:
        chosen.append(name)
        steps.append(step(chosen, evaluate(frozenset(chosen)).accuracy))
        if steps[-1].within_budget:
            return FallbackResult(fp32_accuracy, max_drop_points, steps, cap, "budget met",
                                  f"{len(chosen)} layer(s) reverted to float: int8 drop {steps[-1].drop_points:.2f} "
                                  f"points, within the {max_drop_points:g}-point budget")
    best = min(steps, key=lambda s: (s.drop_points, len(s.float_layers)))
    return FallbackResult(fp32_accuracy, max_drop_points, steps, cap, "cap reached",
                          f"the budget still fails after reverting {len(chosen)} layer(s) (the cap): best drop "
                          f"{best.drop_points:.2f} points > {max_drop_points:g}")
