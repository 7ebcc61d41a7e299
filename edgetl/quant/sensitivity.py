"""Accuracy-aware int8: per-layer sensitivity and the float fallback loop, independent of how a model is quantized.

The method only needs an ``evaluate(float_layers) -> Evaluation`` callable: the accuracy (and the output error
against the float model) of the int8 model with exactly those layers reverted to float, on the validation split.
How a layer is reverted is the backend's business (PT2E: ``edgetl.quant.mixed``), so the same method can serve
another quantizer or runtime (the split NNCF keeps between ``algorithm`` and ``*_backend``).

* Sensitivity: each quantized layer reverted alone. The gain in accuracy is the ground truth; the drop of the
  logit mean squared error against the float model is a cheaper, finer signal (it separates layers whose revert
  flips no image on a small split). Layers are ranked by accuracy gain, then by error drop; the Spearman rank
  correlation of the two is recorded so that the proxy is checked on every run rather than assumed.
* Screened ranking (the default, cheaper): one validation pass per layer is the cost of the exact ranking. Instead
  every layer is screened by the logit error its revert removes on a fixed subset of the validation images, the
  ones where int8 is furthest from float (a squared error is dominated by them, so the subset keeps most of the
  signal at a fraction of the images); only the best ``confirm`` layers by that proxy get a full validation pass
  for their accuracy gain. The budget decision never rests on the subset: every fallback step is validated on the
  whole split.
* Fallback: while the int8 model misses the budget, the next most sensitive layer is added to the float set and
  the model is revalidated; it stops when the budget holds, or at a cap: the most float layers, or (when a
  ``latency`` callable measures each step) the most latency the float layers may add over the all-int8 model.
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
    # on the whole validation split; None where the layer was screened out (not among the confirmed)
    accuracy_reverted: float | None  # top-1 with this layer alone in float
    accuracy_gain: float | None  # points gained by reverting it alone
    logit_mse_reverted: float | None
    mse_drop: float | None  # logit MSE removed by reverting it alone (the proxy)
    screen_mse_drop: float | None = None  # the same on the screening subset (screened ranking only)


@dataclass
class Sensitivity:
    """Every layer's sensitivity, most sensitive first, with the base figures and the proxy's rank correlation."""

    base: Evaluation
    rows: list[LayerSensitivity]
    images: int
    proxy_spearman: float | None  # rank correlation of the proxy with accuracy_gain; None when undefined
    wall_time_s: float = 0.0
    method: str = "exact"  # "exact": every layer on the whole split | "screened" (see rank_layers)
    screen_images: int = 0  # images of the screening subset (screened only)
    full_passes: int = 0  # validation passes over the whole split the ranking cost (the base included)
    screen_passes: int = 0  # passes over the screening subset

    def as_dict(self) -> dict[str, Any]:
        proxy = ("logit MSE drop on the screening subset vs accuracy gain on val, confirmed layers (Spearman)"
                 if self.method == "screened" else "logit MSE drop vs accuracy gain (Spearman)")
        return {"base_accuracy": self.base.accuracy, "base_logit_mse": self.base.logit_mse, "images": self.images,
                "method": self.method, "screen_images": self.screen_images, "full_passes": self.full_passes,
                "screen_passes": self.screen_passes, "proxy": proxy, "proxy_spearman": self.proxy_spearman,
                "wall_time_s": self.wall_time_s, "layers": [asdict(r) for r in self.rows]}


@dataclass
class FallbackStep:
    float_layers: list[str]  # the layers in float after this step (cumulative)
    accuracy: float
    drop_points: float  # fp32 - int8, in accuracy points
    within_budget: bool
    # batch-1 latency where measured (the ``latency`` callable of ``fallback``): "vs_int8" (this step's p50 over
    # the all-int8 model's), "vs_fp32", their round ranges, the runtime and rounds
    latency: dict[str, Any] = field(default_factory=dict)


@dataclass
class FallbackResult:
    """The fallback loop's outcome: every step (step 0: all layers int8) and the chosen float set."""

    fp32_accuracy: float
    max_drop_points: float
    steps: list[FallbackStep]
    cap: int
    status: str  # "not needed" | "budget met" | "cap reached" | "latency cap reached"
    message: str
    max_latency_increase: float | None = None  # the latency cap (fraction over all-int8), if any

    @property
    def float_layers(self) -> list[str]:
        return list(self.steps[-1].float_layers)

    def as_dict(self) -> dict[str, Any]:
        return {"fp32_accuracy": self.fp32_accuracy, "max_drop_points": self.max_drop_points, "cap": self.cap,
                "max_latency_increase": self.max_latency_increase, "status": self.status, "message": self.message, "float_layers": self.float_layers,
                "steps": [asdict(s) for s in self.steps]}


# --------------------------------------------------------------------------------------------------- checks
def min_rank_images(max_drop_points: float) -> int:
    """The smallest split on which one image weighs no more than the budget (100 / budget images)."""
    return math.ceil(100.0 / max_drop_points) if max_drop_points > 0 else math.inf  # type: ignore[return-value]


def check_inputs(images: int, max_drop_points: float, cap: int, fp32_vs_itself: float, where: str,
                 max_latency_increase: float | None = None) -> None:
    """Refuse inputs the fallback cannot work with, each with its own message.

    Args:
        images: size of the validation split.
        max_drop_points: the target's budget, in accuracy points.
        cap: the most layers the config lets the loop revert.
        fp32_vs_itself: the float model's accuracy drop against itself on the same batches (must be 0).
        where: the config field or file to name in messages.
        max_latency_increase: the latency cap (a fraction over the all-int8 model), if any.
    """
    if cap < 1:
        raise ConfigError(f"{where}.max_float_layers is {cap}: the fallback may revert no layer, so it cannot help",
                          hint=f"set {where}.max_float_layers to 1 or more, or {where}.enabled: false")
    if max_latency_increase is not None and max_latency_increase <= 0:
        raise ConfigError(f"{where}.max_latency_increase is {max_latency_increase:g}: a float layer always costs "
                          "some latency over int8, so this cap lets no layer revert",
                          hint=f"set {where}.max_latency_increase above 0 (0.2: 20 % slower at most), or null "
                          "for no latency cap")
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
                images: int, progress: Callable[[int, int], None] | None = None, *,
                screen: Callable[[frozenset[str]], Evaluation] | None = None, screen_images: int = 0,
                confirm: int = 0) -> Sensitivity:
    """Revert each layer alone and measure it; the most sensitive layer first.

    Without ``screen`` (exact): every layer on the whole split (``evaluate``), one pass per layer. With ``screen``
    (the same model evaluated on a subset of ``screen_images`` images): every layer is screened by the logit error
    its revert removes there, and only the ``confirm`` best by that proxy are evaluated on the whole split; those
    rank first (by accuracy gain, then error drop), the rest follow in proxy order.
    """
    import time

    started = time.perf_counter()
    base = evaluate(frozenset())
    if screen is None:
        rows = []
        for i, layer in enumerate(layers):
            e = evaluate(frozenset({layer.name}))
            rows.append(_row(layer, e, base))
            if progress is not None:
                progress(i + 1, len(layers))
        spearman = _spearman([r.accuracy_gain or 0.0 for r in rows], [r.mse_drop or 0.0 for r in rows])
        rows.sort(key=lambda r: (-(r.accuracy_gain or 0.0), -(r.mse_drop or 0.0)))
        return Sensitivity(base, rows, images, spearman, round(time.perf_counter() - started, 2),
                           full_passes=1 + len(layers))
    screen_base = screen(frozenset())
    drops = {}
    for i, layer in enumerate(layers):
        drops[layer.name] = screen_base.logit_mse - screen(frozenset({layer.name})).logit_mse
        if progress is not None:
            progress(i + 1, len(layers) + confirm)
    order = sorted(layers, key=lambda la: -drops[la.name])
    confirmed = [_row(la, evaluate(frozenset({la.name})), base, drops[la.name]) for la in order[:confirm]]
    spearman = _spearman([r.accuracy_gain or 0.0 for r in confirmed], [drops[r.layer] for r in confirmed])
    confirmed.sort(key=lambda r: (-(r.accuracy_gain or 0.0), -(r.screen_mse_drop or 0.0)))
    rest = [LayerSensitivity(la.name, la.kind, None, None, None, None, drops[la.name]) for la in order[confirm:]]
    return Sensitivity(base, confirmed + rest, images, spearman, round(time.perf_counter() - started, 2),
                       method="screened", screen_images=screen_images, full_passes=1 + len(confirmed),
                       screen_passes=1 + len(layers))


def _row(layer: Layer, e: Evaluation, base: Evaluation, screen_drop: float | None = None) -> LayerSensitivity:
    return LayerSensitivity(layer.name, layer.kind, e.accuracy, round(100 * (e.accuracy - base.accuracy), 4),
                            e.logit_mse, base.logit_mse - e.logit_mse, screen_drop)


def fallback(sensitivity: Sensitivity, evaluate: Callable[[frozenset[str]], Evaluation], fp32_accuracy: float,
             max_drop_points: float, cap: int, *, latency: Callable[[frozenset[str]], dict[str, Any]] | None = None,
             max_latency_increase: float | None = None) -> FallbackResult:
    """Revert the most sensitive layers one at a time, revalidating each step, until the budget holds or a cap.

    Step 0 is the all-int8 model (``sensitivity.base``); step k has the k most sensitive layers in float.
    ``latency(float_layers)``, where given, measures each step (its dict lands in the step; ``vs_int8`` is the
    step's p50 over the all-int8 model's). With ``max_latency_increase`` (0.2: at most 20 % slower than all-int8)
    the loop stops before a step that costs more; that step is recorded but never chosen.
    """
    def step(names: list[str], accuracy: float) -> FallbackStep:
        drop = round(100 * (fp32_accuracy - accuracy), 4)
        measured = latency(frozenset(names)) if latency is not None else {}
        return FallbackStep(list(names), accuracy, drop, drop <= max_drop_points + 1e-9, measured)

    def result(steps: list[FallbackStep], status: str, message: str) -> FallbackResult:
        return FallbackResult(fp32_accuracy, max_drop_points, steps, cap, status, message, max_latency_increase)

    base = FallbackStep([], sensitivity.base.accuracy, round(100 * (fp32_accuracy - sensitivity.base.accuracy), 4),
                        False)
    base.within_budget = base.drop_points <= max_drop_points + 1e-9
    if base.within_budget:
        return result([base], "not needed", f"int8 is within the {max_drop_points:g}-point budget "
                      f"({base.drop_points:+.2f} points): the fallback reverts nothing")
    steps = [step([], sensitivity.base.accuracy)]
    order = [r.layer for r in sensitivity.rows]
    chosen: list[str] = []
    for name in order[:cap]:
        chosen.append(name)
        steps.append(step(chosen, evaluate(frozenset(chosen)).accuracy))
        cost = steps[-1].latency.get("vs_int8")
        if max_latency_increase is not None and cost is not None and cost > 1 + max_latency_increase + 1e-9:
            steps[-1].within_budget = False  # never chosen: it breaks the latency cap
            steps[-1].latency["over_cap"] = True
            return result(steps, "latency cap reached",
                          f"reverting {len(chosen)} layer(s) costs {100 * (cost - 1):.0f} % latency over all-int8, "
                          f"more than the {100 * max_latency_increase:g} % cap, with the drop at "
                          f"{steps[-2].drop_points:.2f} points > {max_drop_points:g}")
        if steps[-1].within_budget:
            return result(steps, "budget met", f"{len(chosen)} layer(s) reverted to float: int8 drop "
                          f"{steps[-1].drop_points:.2f} points, within the {max_drop_points:g}-point budget")
    best = min(steps, key=lambda s: (s.drop_points, len(s.float_layers)))
    return result(steps, "cap reached", f"the budget still fails after reverting {len(chosen)} layer(s) (the cap): "
                  f"best drop {best.drop_points:.2f} points > {max_drop_points:g}")
