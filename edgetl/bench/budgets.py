"""Check a target's budgets (latency, size, memory, int8 accuracy drop) against what the benchmark measured.

Latency and memory count only when measured on the target's own runtime and device: rows measured on the device
itself over SSH (``measured_on: "device"``) first, then, where this host is an instance of the target, this host's
rows. A target whose device is not this host and was not reached (a Jetson, a Raspberry Pi, an NPU) gets
``estimated`` (a roofline estimate row, stated with its band, never passing or failing) or ``not measured``, with
the host proxy figure beside it: nothing pretends to be a measurement it is not. Size and accuracy do not depend on
the device and are checked.
"""

from __future__ import annotations

from typing import Any

from edgetl.runtimes import runtime_format
from edgetl.targets import TargetProfile


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


# the int8 routes, in the order a tie in accuracy is broken (QAT first: trained for the int8 grid); "dynamic"
# (a text encoder's dynamic int8: ONNX Runtime's fused graph, OpenVINO's int8-weight IR)
INT8_ROUTES = ("qat", "ptq", "dynamic")
# routes that are a different model in each format (ONNX Runtime's fused dynamic int8, OpenVINO's int8 weights):
# chosen per format on that format's own figure, never as the one shared choice
PER_FORMAT_ROUTES = frozenset({"dynamic"})


def _route_accuracy(results: dict[str, Any], fmt: str | None) -> dict[str, float]:
    """Mean measured accuracy of each int8 route among the ok rows of format ``fmt`` (None: every format)."""
    best: dict[str, list[float]] = {}
    for r in _ok(results.get("rows", [])):
        if fmt is not None and r.get("format") != fmt:
            continue
        if r.get("precision") == "int8" and r.get("accuracy") is not None:
            best.setdefault(r.get("source", ""), []).append(r["accuracy"])
    return {s: sum(v) / len(v) for s, v in best.items() if s in INT8_ROUTES}


def _route_scores(results: dict[str, Any], fmt: str | None) -> dict[str, float]:
    """The accuracy each int8 route measured in format ``fmt`` is chosen by: its top-1 on val from the build
    (``results["int8_selection"]``, written by the quantize and export stages) when that names every such route,
    else the rows' mean accuracy on the evaluation split (a bare model file, results of an older edgetl). So a
    build never picks its int8 route on the held-out test split its figures are reported on."""
    measured = _route_accuracy(results, fmt)
    chosen_on = {route: _format_value(value, fmt) for route, value in
                 ((results.get("int8_selection") or {}).get("accuracy") or {}).items()}
    if measured and all(chosen_on.get(route) is not None for route in measured):
        return {route: float(chosen_on[route]) for route in measured}  # type: ignore[arg-type]
    return measured


def _format_value(value: Any, fmt: str | None) -> float | None:
    """A route's val figure: one number, or one per format (``dynamic``: a different model in each runtime) read
    for ``fmt``, or averaged over the formats when the choice is shared."""
    if not isinstance(value, dict):
        return None if value is None else float(value)
    if fmt is not None:
        return None if value.get(fmt) is None else float(value[fmt])
    figures = [float(v) for v in value.values() if v is not None]
    return sum(figures) / len(figures) if figures else None


def _best(means: dict[str, float]) -> str:
    return max(means, key=lambda s: (means[s], -INT8_ROUTES.index(s)))


def choose_int8_source(results: dict[str, Any], fmt: str | None = None) -> str:
    """The int8 model to deploy: the quantization route with the higher accuracy on the split the build selects
    on (``_route_scores``: val where the build recorded it, else the rows' mean).

    None: the routes every measured format has (qat/ptq), over all their rows, as a build with one route for all
    formats ships. A format: ``choose_int8_sources``' choice for it.
    """
    if fmt is not None:
        return choose_int8_sources(results).get(fmt, choose_int8_source(results))
    formats = _int8_formats(results)
    shared = set.intersection(*(set(_route_accuracy(results, f)) for f in formats)) - PER_FORMAT_ROUTES \
        if formats else set()
    means = {s: m for s, m in _route_scores(results, None).items() if s in shared}
    return _best(means) if means else "qat"


def _int8_formats(results: dict[str, Any]) -> list[str]:
    return sorted({str(r.get("format")) for r in _ok(results.get("rows", [])) if r.get("precision") == "int8"
                   and r.get("format")})


def choose_int8_sources(results: dict[str, Any]) -> dict[str, str]:
    """The int8 route per model format: the shared choice (``choose_int8_source``), unless a route only that
    format has (ONNX Runtime's ``dynamic``) measured more accurate in that format's own rows."""
    shared = choose_int8_source(results)
    out = {}
    formats = _int8_formats(results)
    for f in formats:
        own = _route_scores(results, f)
        others = set().union(*(set(_route_accuracy(results, g)) for g in formats if g != f))
        candidates = {s: m for s, m in own.items() if s == shared or s not in others or s in PER_FORMAT_ROUTES}
        out[f] = shared if shared in candidates and candidates[shared] >= max(candidates.values()) else (
            _best(candidates) if candidates else shared)
    return out


def deployment_choice(target: TargetProfile) -> tuple[str, str, str, str]:
    """(runtime, device, precision, format) the target prefers: its first runtime spec and precision."""
    spec = target.runtimes[0]
    return spec.runtime, spec.device, spec.precisions[0], runtime_format(spec.runtime)


def _where(r: dict[str, Any]) -> str:
    return r.get("measured_on") or "host"


def _target_row(target: TargetProfile, results: dict[str, Any], source: str, where: str) -> dict[str, Any] | None:
    """The best-preferred ok row of the target's own runtime and device measured ``where`` (not a proxy)."""
    rows = [r for r in _ok(results.get("rows", [])) if _where(r) == where]
    for spec in target.runtimes:
        for precision in spec.precisions:
            for r in rows:
                if (r.get("runtime"), r.get("device"), r.get("precision")) != (spec.runtime, spec.device, precision):
                    continue
                if r.get("proxy") or (precision == "int8" and r.get("source") != source):
                    continue
                if where != "estimate" and not (r.get("latency_ms") or {}).get("p90"):
                    continue
                return r
    return None


def _measured_row(target: TargetProfile, results: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The row the budgets are checked on: the device's own measurement first, then this host's (as the target)."""
    return _target_row(target, results, source, "device") or _target_row(target, results, source, "host")


def _proxy_row(results: dict[str, Any], precision: str, source: str) -> dict[str, Any] | None:
    candidates = [
        r for r in _ok(results.get("rows", []))
        if r.get("precision") == precision and (precision != "int8" or r.get("source") == source)
        and r.get("format") != "torch" and (r.get("latency_ms") or {}).get("p90") is not None
    ]
    return min(candidates, key=lambda r: r["latency_ms"]["p90"]) if candidates else None


def _row(budget: str, limit: float | None, measured: float | None, unit: str, where: str,
         note: str = "", estimated: float | None = None) -> dict[str, Any]:
    if limit is None:
        status = "no budget"
    elif measured is None:
        status = "estimated" if estimated is not None else "not measured"
    else:
        status = "pass" if measured <= limit else "fail"
    row = {"budget": budget, "limit": limit, "measured": measured, "unit": unit, "where": where,
           "status": status, "note": note}
    if estimated is not None:
        row["estimated"] = estimated  # never compared with the limit
    return row


def _accuracy_drop(results: dict[str, Any], source: str, runtime_order: list[str]) -> tuple[float | None, str]:
    ok = _ok(results.get("rows", []))
    for measured_on in ("device", "host"):  # both figures from the same machine
        rows = [r for r in ok if _where(r) == measured_on]
        for runtime in runtime_order:
            fp32 = [r for r in rows if r.get("runtime") == runtime and r.get("precision") == "fp32"
                    and r.get("format") != "torch" and r.get("accuracy") is not None]
            int8 = [r for r in rows if r.get("runtime") == runtime and r.get("precision") == "int8"
                    and r.get("source") == source and r.get("accuracy") is not None]
            if fp32 and int8:
                drop = (fp32[0]["accuracy"] - int8[0]["accuracy"]) * 100.0
                on = f" on {int8[0].get('device_hostname') or 'the device'}" if measured_on == "device" else ""
                split = results.get("eval_split") or "the evaluation split"
                return round(drop, 3), f"{runtime}:{int8[0].get('device')} fp32 vs int8-{source}{on}, top-1 on {split}"
    return None, ""


def check_budgets(target: TargetProfile, results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per budget: limit, measured value, where it was measured, and pass/fail/not measured."""
    budgets = target.budgets
    runtime, device, precision, fmt = deployment_choice(target)
    source = choose_int8_source(results, fmt)
    measured = _measured_row(target, results, source)
    rows: list[dict[str, Any]] = []
    if measured is not None:
        where = f"{measured['runtime']}:{measured['device']} {measured['precision']} ({measured.get('name', '')})"
        if _where(measured) == "device":
            where += f" on the device {measured.get('device_hostname') or measured.get('device_address') or ''}"
        rows.append(_row("p90 latency", budgets.p90_latency_ms, measured["latency_ms"]["p90"], "ms", where))
        rows.append(_row("peak memory", budgets.peak_memory_mb, measured.get("peak_memory_mb"), "MB", where))
    else:
        proxy = _proxy_row(results, precision, source)
        note = (f"host proxy {proxy['runtime']}:{proxy['device']} p90 {proxy['latency_ms']['p90']:.2f} ms"
                if proxy else "no host proxy ran")
        where = f"{runtime}:{device} (not on this host)"
        estimate = _target_row(target, results, source, "estimate")
        est = (estimate or {}).get("estimate") or {}
        if estimate is not None and est.get("latency_ms") is not None:
            where = (f"{estimate['runtime']}:{estimate['device']} {estimate['precision']} ({estimate.get('name', '')}),"
                     " roofline estimate")
            note = (f"estimated {est['latency_ms']:.3g} ms, real {est['low_ms']:.3g}-{est['high_ms']:.3g} ms by the "
                    f"band validated on the build host; not measured, so neither pass nor fail; {note}")
            rows.append(_row("p90 latency", budgets.p90_latency_ms, None, "ms", where, note,
                             estimated=est["latency_ms"]))
        else:
            rows.append(_row("p90 latency", budgets.p90_latency_ms, None, "ms", where, note))
        rows.append(_row("peak memory", budgets.peak_memory_mb, None, "MB", f"{runtime}:{device} (not on this host)"))
    sized = [r for r in results.get("rows", []) if r.get("format") == fmt and r.get("precision") == precision
             and (precision != "int8" or r.get("source") == source) and r.get("size_bytes")]
    size_mb = round(sized[0]["size_bytes"] / 1e6, 3) if sized else None
    rows.append(_row("model size", budgets.model_size_mb, size_mb, "MB",
                     f"{fmt} {precision}" + (f"-{source}" if precision == "int8" else "")))
    if target.wants_int8:
        order = [runtime] + [r.runtime for r in target.runtimes] + ["onnxruntime", "openvino"]
        drop, where = _accuracy_drop(results, source, order)
        rows.append(_row("int8 accuracy drop", budgets.max_accuracy_drop, drop, "points", where))
    return rows


def budget_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table (fits a terminal and a CI log)."""
    header = f"{'budget':<20} {'limit':>10} {'measured':>10} {'unit':<7} {'status':<13} where"
    lines = [header, "-" * len(header)]
    for r in rows:
        limit = "-" if r["limit"] is None else f"{r['limit']:g}"
        measured = "-" if r["measured"] is None else f"{r['measured']:.3g}"
        if r["measured"] is None and r.get("estimated") is not None:
            measured = f"~{r['estimated']:.3g}"
        note = f"  [{r['note']}]" if r["note"] else ""
        lines.append(f"{r['budget']:<20} {limit:>10} {measured:>10} {r['unit']:<7} {r['status']:<13} {r['where']}{note}")
    return "\n".join(lines)
