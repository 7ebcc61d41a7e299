"""Roofline latency estimate of an exported ONNX model on a device known only by its peak rates.

Each layer costs ``max(2 * MACs / peak_ops, bytes / bandwidth)`` plus an optional fixed per-layer overhead, and the
layers run one after another; the MACs and bytes come from :func:`edgetl.estimate.graph.layer_costs`. The figure
is idealised: compute at peak, memory-bound layers priced at the device's (DRAM) bandwidth even where a small
activation stays in cache, runtime-inserted layout copies ignored. So it is reported as an estimate, with the error
band validated by ``benchmarks/roofline_validation.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgetl.errors import ConfigError
from edgetl.estimate.graph import FloatPrecision, LayerCost, layer_costs
from edgetl.estimate.peaks import DevicePeaks

if TYPE_CHECKING:
    import onnx

Bound = Literal["compute", "memory", "fused", "free", "unknown"]


@dataclass(frozen=True)
class LayerEstimate:
    """One row of a :class:`RooflineEstimate`: a node's cost and its estimated time on the device."""

    name: str
    op: str
    precision: str
    macs: int
    weight_bytes: int
    activation_bytes: int
    bound: Bound
    time_s: float
    detail: str = ""

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


@dataclass(frozen=True)
class RooflineEstimate:
    """A labelled latency *estimate*: per-layer rows, the total, the peaks used and where they came from."""

    model: str
    batch: int
    layers: tuple[LayerEstimate, ...]
    peaks: DevicePeaks
    overhead_s_per_layer: float
    total_s: float
    unknown: tuple[str, ...] = field(default=())
    label: str = "estimate (roofline)"

    @property
    def total_ms(self) -> float:
        return self.total_s * 1e3

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.layers)

    @property
    def bytes(self) -> int:
        return sum(row.bytes for row in self.layers)

    def time_by_bound(self) -> dict[str, float]:
        """Seconds spent in compute-bound and memory-bound layers (overhead included)."""
        totals: dict[str, float] = {}
        for row in self.layers:
            totals[row.bound] = totals.get(row.bound, 0.0) + row.time_s
        return totals

    def to_dict(self, *, rows: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label, "model": self.model, "batch": self.batch, "total_ms": round(self.total_ms, 5),
            "macs": self.macs, "bytes": self.bytes, "overhead_s_per_layer": self.overhead_s_per_layer,
            "time_by_bound_ms": {k: round(v * 1e3, 5) for k, v in self.time_by_bound().items()},
            "peaks": self.peaks.to_dict(), "unknown": list(self.unknown),
        }
        if rows:
            data["layers"] = [
                {"name": r.name, "op": r.op, "detail": r.detail, "precision": r.precision, "macs": r.macs,
                 "weight_bytes": r.weight_bytes, "activation_bytes": r.activation_bytes, "bound": r.bound,
                 "time_ms": r.time_s * 1e3}
                for r in self.layers
            ]
        return data


def roofline(costs: Iterable[LayerCost], peaks: DevicePeaks, *, model: str = "", batch: int = 1,
             overhead_s_per_layer: float = 0.0) -> RooflineEstimate:
    """Time each layer on ``peaks``: ``max(2 * macs / peak_ops, bytes / bandwidth) + overhead``, summed.

    Args:
        costs: from :func:`layer_costs`.
        peaks: the device's peak rates.
        model: a name for the result.
        batch: the batch size the costs were computed at (recorded only).
        overhead_s_per_layer: a fixed cost added to every layer that does work (a kernel launch or dispatch);
            fused, free and unknown layers add none.

    Raises:
        ConfigError: a layer runs at a precision ``peaks`` has no figure for, or the overhead is negative.
    """
    if overhead_s_per_layer < 0:
        raise ConfigError(f"overhead_s_per_layer must be >= 0, got {overhead_s_per_layer}")
    rows: list[LayerEstimate] = []
    unknown: list[str] = []
    for cost in costs:
        bound: Bound
        if cost.kind == "compute":
            compute_s = 2 * cost.macs / peaks.ops_per_s(cost.precision)
            memory_s = cost.bytes / peaks.bandwidth_bytes_per_s
            bound = "compute" if compute_s >= memory_s else "memory"
            time_s = max(compute_s, memory_s) + overhead_s_per_layer
        elif cost.kind == "memory":
            bound, time_s = "memory", cost.bytes / peaks.bandwidth_bytes_per_s + overhead_s_per_layer
        else:
            bound, time_s = cost.kind, 0.0
            if cost.kind == "unknown":
                unknown.append(cost.name)
        rows.append(LayerEstimate(cost.name, cost.op, cost.precision, cost.macs, cost.weight_bytes,
                                  cost.activation_bytes, bound, time_s, cost.detail))
    return RooflineEstimate(model=model, batch=batch, layers=tuple(rows), peaks=peaks,
                            overhead_s_per_layer=overhead_s_per_layer, total_s=math.fsum(r.time_s for r in rows),
                            unknown=tuple(unknown))


def estimate_latency(model: str | Path | onnx.ModelProto, peaks: DevicePeaks, *, batch: int = 1,
                     dims: Mapping[str, int] | None = None, float_precision: FloatPrecision | None = None,
                     overhead_s_per_layer: float = 0.0, fuse: bool = True) -> RooflineEstimate:
    """Roofline estimate of one inference of ``model`` on the device described by ``peaks``.

    :func:`layer_costs` then :func:`roofline`; see them for the arguments. Example::

        peaks = DevicePeaks.from_target(load_target("jetson"))
        est = estimate_latency("model_int8.onnx", peaks, batch=1)
        print(f"{est.total_ms:.2f} ms ({est.label}, peaks {est.peaks.source})")
    """
    name = model.graph.name if not isinstance(model, (str, Path)) else Path(model).name
    costs = layer_costs(model, batch=batch, dims=dims, float_precision=float_precision, fuse=fuse)
    return roofline(costs, peaks, model=name, batch=batch, overhead_s_per_layer=overhead_s_per_layer)
