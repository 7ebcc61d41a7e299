"""The regression gate: compare a results file with a baseline and fail on slower or less accurate rows.

Rows match on (name, runtime, device, precision, measured_on). Rows new since the baseline are listed, never
failed. A row regresses when its top-1 fell by more than ``max_accuracy_drop`` points, when it ran in the
baseline but is missing, skipped or failed now, or when its latency rose by more than the threshold *beyond the
measured noise of both runs*:

Each run times a row in rounds (``latency_rounds``); the fastest and slowest round median bound its p50
(``[low, high]``, a distribution-free interval: see ``LatencyRounds``). The slowdown lies between
``ratio_low = now.low / base.high`` and ``ratio_high = now.high / base.low``, and with ``limit = 1 +
max_latency_regression / 100``:

- ``regressed`` when ``ratio_low > limit``: every round of this run is slower than every baseline round by more
  than the threshold. Were the slowdown at most the threshold, the rounds of both runs (this run's scaled down
  by ``limit``) would be exchangeable and so extreme an order would have probability ``1 / C(k1 + k2, k1)``
  (1/252 for 5 rounds each): the one-sided Mann-Whitney test on round medians at its strictest (U = 0).
- ``pass`` when ``ratio_high <= limit``: even the least favourable pairing of rounds stays within the threshold.
- ``inconclusive`` otherwise: the noise, ``±(ratio_high - ratio_low) / 2`` of the p50 ratio, is larger than the
  gap between the change and the threshold, so this pair of runs cannot say. A file of one round (or written
  before rounds) has no measured noise: its interval is its p50, and between two such files the rule is the plain
  threshold on the p50 change.

``gate.md`` is written either way (and appended to ``$GITHUB_STEP_SUMMARY`` when that is set), so a CI job page
shows the comparison; a regression raises ``BudgetExceededError`` (exit code 1), else an inconclusive row raises
``GateInconclusiveError`` (exit code 4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgetl.bench.results import BenchResults, BenchRow, load_results
from edgetl.errors import BudgetExceededError, ConfigError, GateInconclusiveError
from edgetl.fsutil import write_text

GATE_NAME = "gate.md"


@dataclass
class GateRow:
    label: str
    status: str  # pass | regressed | inconclusive | missing | new
    baseline_p50: float | None
    current_p50: float | None
    latency_change_pct: float | None
    baseline_accuracy: float | None
    current_accuracy: float | None
    accuracy_change_points: float | None
    why: str = ""
    noise_pct: float | None = None  # ± of the p50 ratio from both runs' round intervals, percent


@dataclass(frozen=True)
class LatencyInterval:
    """A row's p50 and the interval its rounds give it (``low == high == p50``: one round, no measured noise)."""

    p50: float
    low: float
    high: float
    rounds: int = 1

    @classmethod
    def of(cls, row: BenchRow) -> LatencyInterval | None:
        """From a results row: ``latency_ms.p50``, spread by the round medians' relative min and max."""
        if row.latency_ms is None or row.latency_ms.p50 <= 0:
            return None
        p50 = row.latency_ms.p50
        rounds = row.latency_rounds
        if rounds is None or rounds.rounds < 2 or rounds.p50 <= 0:
            return cls(p50, p50, p50, 1)
        return cls(p50, p50 * rounds.low / rounds.p50, p50 * rounds.high / rounds.p50, rounds.rounds)


@dataclass(frozen=True)
class LatencyVerdict:
    status: str  # pass | regressed | inconclusive
    change_pct: float  # p50 now / p50 baseline - 1, percent
    ratio_low: float  # now.low / base.high
    ratio_high: float  # now.high / base.low
    noise_pct: float  # half the ratio interval, in percent of the p50 ratio
    why: str


def latency_verdict(base: LatencyInterval, now: LatencyInterval, max_latency_pct: float) -> LatencyVerdict:
    """The decision rule of the module docstring: regressed, pass or inconclusive."""
    ratio = now.p50 / base.p50
    low, high = now.low / base.high, now.high / base.low
    noise = (high - low) / 2 / ratio * 100.0
    change = (ratio - 1.0) * 100.0
    limit = 1.0 + max_latency_pct / 100.0
    unmeasured = [name for name, side in (("baseline", base), ("this run", now)) if side.rounds < 2]
    caveat = f"; no rounds in {' and '.join(unmeasured)}, noise not measured there" if unmeasured else ""
    if low > limit:
        return LatencyVerdict("regressed", change, low, high, noise,
                              f"p50 {change:+.1f}% > {max_latency_pct:g}% beyond noise ±{noise:.1f}% "
                              f"(slowest baseline round to fastest round now: x{low:.3f}){caveat}")
    if high <= limit:
        return LatencyVerdict("pass", change, low, high, noise, "")
    return LatencyVerdict("inconclusive", change, low, high, noise,
                          f"inconclusive: noise ±{noise:.1f}% (p50 {change:+.1f}%, ratio x{low:.3f}-x{high:.3f} "
                          f"spans the +{max_latency_pct:g}% threshold){caveat}")


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
    def inconclusive(self) -> list[GateRow]:
        return [r for r in self.rows if r.status == "inconclusive"]

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
    drop_points = ((now.accuracy - acc_base) * 100.0
                   if acc_base is not None and now.accuracy is not None else None)
    reasons = []
    latency_status, change, noise = "pass", None, None
    interval_base, interval_now = LatencyInterval.of(base), LatencyInterval.of(now)
    if interval_base is not None and interval_now is not None:
        verdict = latency_verdict(interval_base, interval_now, max_latency)
        latency_status, change, noise = verdict.status, verdict.change_pct, verdict.noise_pct
        if verdict.why:
            reasons.append(verdict.why)
    accuracy_failed = False
    if drop_points is not None and -drop_points > max_drop:
        reasons.append(f"top-1 {drop_points:+.2f} points > -{max_drop:g}")
        accuracy_failed = True
    if acc_base is not None and now.accuracy is None:
        reasons.append("accuracy no longer measured")
        accuracy_failed = True
    status = "regressed" if accuracy_failed or latency_status == "regressed" else latency_status
    return GateRow(_label(base), status, p50_base, p50_now,
                   None if change is None else round(change, 2), acc_base, now.accuracy,
                   None if drop_points is None else round(drop_points, 3), "; ".join(reasons),
                   None if noise is None else round(noise, 2))


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
    header = (f"{'row':<64} {'status':<12} {'p50 base':>9} {'p50 now':>9} {'Δ%':>7} {'noise ±%':>8} "
              f"{'top-1 base':>10} {'top-1 now':>10} {'Δ pts':>7}  why")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.label[:64]:<64} {r.status:<12} {_f(r.baseline_p50, '.3f'):>9} "
                     f"{_f(r.current_p50, '.3f'):>9} {_f(r.latency_change_pct, '+.1f'):>7} "
                     f"{_f(r.noise_pct, '.1f'):>8} "
                     f"{_acc(r.baseline_accuracy):>10} {_acc(r.current_accuracy):>10} "
                     f"{_f(r.accuracy_change_points, '+.2f'):>7}  {r.why}")
    return "\n".join(lines)


def render_markdown(rows: list[GateRow], current: BenchResults, baseline: BenchResults, max_latency: float,
                    max_drop: float, baseline_path: Path) -> str:
    bad = [r for r in rows if r.status in ("regressed", "missing")]
    unsure = [r for r in rows if r.status == "inconclusive"]
    icon = {"pass": "✅", "regressed": "❌", "missing": "❌", "inconclusive": "❔", "new": "🆕"}
    verdict = (f"❌ **{len(bad)} regression(s)**" if bad else
               f"❔ **inconclusive** ({len(unsure)} row(s) noisier than the threshold)" if unsure
               else "✅ **no regression**")
    same_host = current.host.get("hostname_hash") == baseline.host.get("hostname_hash")
    lines = [
        f"## edgetl regression gate: {verdict}", "",
        f"Thresholds: p50 latency +{max_latency:g}%, top-1 -{max_drop:g} points. Baseline: `{baseline_path}` "
        f"({baseline.created}, edgetl {baseline.edgetl_version}); now: {current.created}.", "",
        f"A latency regression must exceed the threshold beyond the noise of both runs (timing rounds: "
        f"baseline {baseline.settings.rounds}, now {current.settings.rounds}); noise ± is half the interval of "
        "the p50 ratio that the fastest and slowest round medians of both runs allow. Where that interval spans "
        "the threshold the row is inconclusive (exit code 4).", "",
    ]
    if not same_host:
        lines += [f"> ⚠️ The baseline was measured on another machine ({baseline.host.get('cpu')}) than this run "
                  f"({current.host.get('cpu')}): latency changes may be the machine, not the model.", ""]
    lines += ["| | row | p50 base (ms) | p50 now (ms) | Δ latency | noise | top-1 base | top-1 now | Δ top-1 (pts) "
              "| why |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = {"regressed": 0, "missing": 1, "inconclusive": 2, "pass": 3, "new": 4}
    for r in sorted(rows, key=lambda r: order[r.status]):
        lines.append(f"| {icon[r.status]} | {r.label} | {_f(r.baseline_p50, '.3f')} | {_f(r.current_p50, '.3f')} | "
                     f"{_f(r.latency_change_pct, '+.1f')}% | ±{_f(r.noise_pct, '.1f')}% | "
                     f"{_acc(r.baseline_accuracy)} | "
                     f"{_acc(r.current_accuracy)} | {_f(r.accuracy_change_points, '+.2f')} | {r.why} |")
    return "\n".join(lines).replace("| -% |", "| - |").replace("| ±-% |", "| - |") + "\n"


def check_regressions(results_path: Path, baseline_path: Path, out_dir: Path, *,
                      max_latency_regression: float = 10.0, max_accuracy_drop: float = 0.5) -> GateReport:
    """Compare ``results_path`` with ``baseline_path``; write ``out_dir/gate.md``; raise unless every row passed.

    Raises:
        BudgetExceededError: a row regressed or went missing (exit code 1); ``table`` holds the comparison.
        GateInconclusiveError: no regression, but a row's latency noise spans the threshold (exit code 4).
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
    if report.inconclusive:
        unsure = report.inconclusive
        worst = max(r.noise_pct or 0.0 for r in unsure)
        raise GateInconclusiveError(
            f"inconclusive: noise ±{worst:.1f}% against {baseline_path} on {len(unsure)} row(s), more than the "
            f"+{max_latency_regression:g}% threshold can resolve: "
            + ", ".join(f"{r.label} (p50 {_f(r.latency_change_pct, '+.1f')}%, noise ±{_f(r.noise_pct, '.1f')}%)"
                        for r in unsure[:3]) + (" ..." if len(unsure) > 3 else ""),
            table=render_table(rows),
            hint=f"see {path}; measure on a quieter machine, with more rounds (bench.rounds) or longer "
                 "(--min-time), or allow a larger --max-latency-regression",
        )
    return report
