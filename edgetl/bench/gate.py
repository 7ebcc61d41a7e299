"""The regression gate: compare a results file with a baseline and fail on slower or less accurate rows.

Rows match on (name, runtime, device, precision). A row regresses when its p50 latency rose by more than
``max_latency_regression`` percent, its top-1 fell by more than ``max_accuracy_drop`` points, or it ran in the
baseline but is missing, skipped or failed now. Rows new since the baseline are listed, never failed.
``gate.md`` is written either way (and appended to ``$GITHUB_STEP_SUMMARY`` when that is set), so a CI job page
shows the comparison; a regression raises ``BudgetExceededError`` (exit code 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgetl.bench.results import BenchResults, BenchRow, load_results
from edgetl.errors import BudgetExceededError, ConfigError
from edgetl.fsutil import write_text

GATE_NAME = "gate.md"


@dataclass
class GateRow:
    label: str
    status: str  # pass | regressed | missing | new
    baseline_p50: float | None
    current_p50: float | None
    latency_change_pct: float | None
    baseline_accuracy: float | None
    current_accuracy: float | None
    accuracy_change_points: float | None
    why: str = ""


@dataclass
class GateReport:
    rows: list[GateRow]
    max_latency_regression: float
    max_accuracy_drop: float
    markdown: str
    path: Path

    @property
    def regressions(self) -> list[GateRow]:
        return [r for r in self.rows if r.status in ("regressed", "missing")]

    @property
    def passed(self) -> bool:
        return not self.regressions


def parse_percent(text: str | float) -> float:
    """``"10%"``, ``"10"`` or ``10.0`` -> 10.0 (percent)."""
    raw = str(text).strip().rstrip("%").strip()
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"expected a percentage such as 10% or 7.5, got {text!r}") from exc
    if value < 0:
        raise ConfigError(f"a regression threshold cannot be negative, got {text!r}")
    return value


def _label(r: BenchRow) -> str:
    """The row, and where it was measured: a host row and a device row of one artifact are different rows."""
    return f"{r.name} @ {r.runtime}:{r.device} {r.precision} on {r.where_label}"


def compare_row(base: BenchRow, now: BenchRow | None, max_latency: float, max_drop: float) -> GateRow:
    p50_base = base.latency_ms.p50 if base.latency_ms else None
    acc_base = base.accuracy
    if now is None or now.status != "ok":
        why = "not in the new results" if now is None else f"{now.status} now: {now.reason}"
        return GateRow(_label(base), "missing", p50_base, None, None, acc_base, None, None, why)
    p50_now = now.latency_ms.p50 if now.latency_ms else None
    change = (p50_now / p50_base - 1.0) * 100.0 if p50_base and p50_now is not None else None
    drop_points = ((now.accuracy - acc_base) * 100.0
                   if acc_base is not None and now.accuracy is not None else None)
    reasons = []
    if change is not None and change > max_latency:
        reasons.append(f"p50 +{change:.1f}% > {max_latency:g}%")
    if drop_points is not None and -drop_points > max_drop:
        reasons.append(f"top-1 {drop_points:+.2f} points > -{max_drop:g}")
    if acc_base is not None and now.accuracy is None:
        reasons.append("accuracy no longer measured")
    return GateRow(_label(base), "regressed" if reasons else "pass", p50_base, p50_now,
                   None if change is None else round(change, 2), acc_base, now.accuracy,
                   None if drop_points is None else round(drop_points, 3), "; ".join(reasons))


def compare(current: BenchResults, baseline: BenchResults, max_latency_regression: float,
            max_accuracy_drop: float) -> list[GateRow]:
    """One gate row per baseline row that ran (ok), plus the rows that are new."""
    now = {r.key: r for r in current.rows}
    rows = [compare_row(b, now.get(b.key), max_latency_regression, max_accuracy_drop)
            for b in baseline.rows if b.status == "ok"]
    base_keys = {b.key for b in baseline.rows}
    for r in current.ok_rows():
        if r.key not in base_keys:
            rows.append(GateRow(_label(r), "new", None, r.latency_ms.p50 if r.latency_ms else None, None, None,
                                r.accuracy, None, "not in the baseline"))
    return rows


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.2f}%"


def render_table(rows: list[GateRow]) -> str:
    """A plain-text table (fits a terminal and a CI log)."""
    header = (f"{'row':<64} {'status':<10} {'p50 base':>9} {'p50 now':>9} {'Δ%':>7} "
              f"{'top-1 base':>10} {'top-1 now':>10} {'Δ pts':>7}  why")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.label[:64]:<64} {r.status:<10} {_f(r.baseline_p50, '.3f'):>9} "
                     f"{_f(r.current_p50, '.3f'):>9} {_f(r.latency_change_pct, '+.1f'):>7} "
                     f"{_acc(r.baseline_accuracy):>10} {_acc(r.current_accuracy):>10} "
                     f"{_f(r.accuracy_change_points, '+.2f'):>7}  {r.why}")
    return "\n".join(lines)


def render_markdown(rows: list[GateRow], current: BenchResults, baseline: BenchResults, max_latency: float,
                    max_drop: float, baseline_path: Path) -> str:
    bad = [r for r in rows if r.status in ("regressed", "missing")]
    icon = {"pass": "✅", "regressed": "❌", "missing": "❌", "new": "🆕"}
    verdict = (f"❌ **{len(bad)} regression(s)**" if bad else "✅ **no regression**")
    same_host = current.host.get("hostname_hash") == baseline.host.get("hostname_hash")
    lines = [
        f"## edgetl regression gate: {verdict}", "",
        f"Thresholds: p50 latency +{max_latency:g}%, top-1 -{max_drop:g} points. Baseline: `{baseline_path}` "
        f"({baseline.created}, edgetl {baseline.edgetl_version}); now: {current.created}.", "",
    ]
    if not same_host:
        lines += [f"> ⚠️ The baseline was measured on another machine ({baseline.host.get('cpu')}) than this run "
                  f"({current.host.get('cpu')}): latency changes may be the machine, not the model.", ""]
    lines += ["| | row | p50 base (ms) | p50 now (ms) | Δ latency | top-1 base | top-1 now | Δ top-1 (pts) | why |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = {"regressed": 0, "missing": 1, "pass": 2, "new": 3}
    for r in sorted(rows, key=lambda r: order[r.status]):
        lines.append(f"| {icon[r.status]} | {r.label} | {_f(r.baseline_p50, '.3f')} | {_f(r.current_p50, '.3f')} | "
                     f"{_f(r.latency_change_pct, '+.1f')}% | {_acc(r.baseline_accuracy)} | "
                     f"{_acc(r.current_accuracy)} | {_f(r.accuracy_change_points, '+.2f')} | {r.why} |")
    return "\n".join(lines).replace("| -% |", "| - |") + "\n"


def check_regressions(results_path: Path, baseline_path: Path, out_dir: Path, *,
                      max_latency_regression: float = 10.0, max_accuracy_drop: float = 0.5) -> GateReport:
    """Compare ``results_path`` with ``baseline_path``; write ``out_dir/gate.md``; raise on a regression.

    Raises:
        BudgetExceededError: a row regressed or went missing (exit code 1); ``table`` holds the comparison.
    """
    current, baseline = load_results(results_path), load_results(baseline_path)
    rows = compare(current, baseline, max_latency_regression, max_accuracy_drop)
    markdown = render_markdown(rows, current, baseline, max_latency_regression, max_accuracy_drop,
                               Path(baseline_path))
    path = write_text(Path(out_dir) / GATE_NAME, markdown)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:  # appended by design: other steps write there too
            fh.write(markdown + "\n")
    report = GateReport(rows, max_latency_regression, max_accuracy_drop, markdown, path)
    if not report.passed:
        bad = report.regressions
        raise BudgetExceededError(
            f"{len(bad)} row(s) regressed against {baseline_path}: " + ", ".join(r.label for r in bad[:3])
            + (" ..." if len(bad) > 3 else ""),
            table=render_table(rows),
            hint=f"see {path}; if the change is intended, make this results.json the new baseline",
        )
    return report
