"""Measuring one loaded session: latency percentiles, throughput, peak memory, accuracy.

Latency follows the house rule: ``time.perf_counter_ns``, warm-up first, then timed runs until both a minimum
count and a minimum time are reached. Each figure times one ``session.run`` call as an application sees it
(named NumPy inputs in, logits out), batch 1 unless the model only accepts another batch size.

On a shared machine one block of timed runs is one draw of the machine's load, so the timing is split into
``rounds`` and the rows measured together take turns (A B C A B C ...: ``timed_rounds``). Load that drifts hits
every row alike, and the spread of the round medians is the measured noise (``summarize_rounds``).

Accuracy figures come from scikit-learn: top-1, F1 and the confusion matrix from the arg-max; with the logits, also
the one-vs-rest ROC AUC and average precision per class and the expected calibration error of the softmax.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgetl.bench.results import ClassMetrics, LatencyRounds, LatencyStats
from edgetl.runtimes.base import Session

MEMORY_METHOD = (
    "peak_memory_mb = peak resident set size (psutil, sampled every 2 ms) during load, first inference, warm-up "
    "and one run at each batch size, minus the RSS just before the load; the process's libraries already loaded "
    "are not counted"
)
MAX_ITERATIONS = 200_000  # a guard for sub-microsecond models with a long min_time


@dataclass(frozen=True)
class TimingPlan:
    warmup: int
    min_iterations: int
    min_time_s: float
    rounds: int = 1  # min_iterations and min_time_s are shared out over the rounds

    def per_round(self) -> TimingPlan:
        """One round's share: a 1/rounds part of the runs and of the time, and a re-warm-up after the other rows
        ran (their turn evicted this model from the caches); the full warm-up precedes the first round."""
        k = max(1, self.rounds)
        return TimingPlan(warmup=max(1, math.ceil(self.warmup / k)) if self.warmup else 0,
                          min_iterations=max(1, math.ceil(self.min_iterations / k)),
                          min_time_s=self.min_time_s / k, rounds=1)


def timed_runs(run: Callable[[], object], plan: TimingPlan) -> list[int]:
    """Warm up, then time ``run()`` until both ``min_iterations`` and ``min_time_s`` are met; nanoseconds each."""
    for _ in range(plan.warmup):
        run()
    samples: list[int] = []
    min_ns = int(plan.min_time_s * 1e9)
    clock = time.perf_counter_ns
    start = clock()
    while True:
        t0 = clock()
        run()
        samples.append(clock() - t0)
        if (len(samples) >= plan.min_iterations and clock() - start >= min_ns) or len(samples) >= MAX_ITERATIONS:
            return samples


def timed_rounds(runs: Sequence[Callable[[], object]], plan: TimingPlan,
                 on_round: Callable[[int], None] | None = None,
                 ) -> tuple[list[list[list[int]]], dict[int, Exception]]:
    """Time every callable in ``plan.rounds`` rounds, taking turns; ``(samples, failures)``.

    ``samples[i][r]`` are the nanoseconds of ``runs[i]`` in round ``r``. Each callable's first round starts
    with the full warm-up, its later rounds with ``per_round().warmup`` runs. A callable that raises is left
    out of the later rounds and its exception is ``failures[i]``; the others keep their turns.
    """
    share = plan.per_round()
    samples: list[list[list[int]]] = [[] for _ in runs]
    failures: dict[int, Exception] = {}
    for rnd in range(max(1, plan.rounds)):
        if on_round is not None:
            on_round(rnd)
        for i, run in enumerate(runs):
            if i in failures:
                continue
            warm = plan.warmup if rnd == 0 else share.warmup
            try:
                samples[i].append(timed_runs(run, TimingPlan(warm, share.min_iterations, share.min_time_s)))
            except Exception as exc:  # this row's runtime failed mid-timing: a failed row, the others go on
                failures[i] = exc
    return samples, failures


def latency_stats(samples_ns: list[int]) -> LatencyStats:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(p50=round(float(p50), 4), p90=round(float(p90), 4), p99=round(float(p99), 4),
                        mean=round(float(ms.mean()), 4), std=round(float(ms.std()), 4),
                        min=round(float(ms.min()), 4), max=round(float(ms.max()), 4), iterations=len(ms))


def rounds_from_medians(round_p50s: Sequence[float], interleaved: bool) -> LatencyRounds:
    """The median of the round medians and its min-max interval (see ``LatencyRounds``)."""
    k = len(round_p50s)
    return LatencyRounds(rounds=k, p50=round(float(np.median(round_p50s)), 4), low=round(min(round_p50s), 4),
                         high=round(max(round_p50s), 4), round_p50s=[round(float(v), 4) for v in round_p50s],
                         confidence=round(1.0 - 2.0 ** (1 - k), 4) if k > 1 else 0.0, interleaved=interleaved)


def summarize_rounds(rounds_ns: Sequence[list[int]], interleaved: bool = True) -> tuple[LatencyStats, LatencyRounds]:
    """Pooled percentiles over every timed run, with ``p50`` the median of the round medians, and the rounds."""
    rounds = rounds_from_medians([latency_stats(r).p50 for r in rounds_ns], interleaved)
    pooled = latency_stats([s for r in rounds_ns for s in r])
    return pooled.model_copy(update={"p50": rounds.p50}), rounds


def keep_samples(samples_ns: list[int], limit: int) -> list[float]:
    """At most ``limit`` samples in ms, evenly strided over the run (keeps drift and outliers visible)."""
    if limit <= 0 or not samples_ns:
        return []
    step = max(1, math.ceil(len(samples_ns) / limit))
    return [round(s / 1e6, 4) for s in samples_ns[::step]]


def throughput(session: Session, batch: Mapping[str, np.ndarray], plan: TimingPlan) -> float:
    """Samples per second running the named-input ``batch`` repeatedly (one call at a time)."""
    b = int(next(iter(batch.values())).shape[0])
    sub = TimingPlan(warmup=max(1, plan.warmup // b), min_iterations=max(3, math.ceil(plan.min_iterations / b)),
                     min_time_s=plan.min_time_s)
    samples = timed_runs(lambda: session.run(batch), sub)
    return round(b * len(samples) / (sum(samples) / 1e9), 2)


class PeakRss:
    """Samples this process's RSS on a background thread; ``peak_mb`` is the rise over the RSS at start."""

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return round((self.peak - self.baseline) / 2**20, 1)


@dataclass
class Accuracy:
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion_matrix: list[list[int]]
    n: int
    # from the logits (None without them): macro one-vs-rest ROC AUC and average precision, and the ECE
    roc_auc: float | None = None
    average_precision: float | None = None
    ece: float | None = None


# Equal-width confidence bins of the expected calibration error: 15 is the count of Guo et al. 2017 ("On calibration
# of modern neural networks"), which most published ECE figures use, so edgetl's figure reads like theirs.
ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float64, max-subtracted so large logits do not overflow)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Reliability:
    """Top-label confidence vs accuracy in ``ECE_BINS`` equal-width bins over [0, 1] (empty bins: count 0)."""

    edges: np.ndarray  # bins + 1 edges
    confidence: np.ndarray  # mean top-1 probability of the samples in each bin (nan where empty)
    accuracy: np.ndarray  # share of them whose top-1 is right (nan where empty)
    count: np.ndarray  # samples per bin

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of (share of samples) x |accuracy - confidence|."""
        n = int(self.count.sum())
        if n == 0:
            return float("nan")
        gap = np.abs(np.nan_to_num(self.accuracy) - np.nan_to_num(self.confidence))
        return float((self.count / n * gap).sum())


def reliability(y_true: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Bin the samples by their top-1 probability (bin i holds (edge i, edge i+1]; the first also holds 0)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
        acc = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / count
    return Reliability(edges=edges, confidence=conf, accuracy=acc, count=count)


def one_vs_rest(y_true: np.ndarray, probabilities: np.ndarray, n_classes: int) -> tuple[list[float | None],
                                                                                       list[float | None]]:
    """Per class, ROC AUC and average precision of "this class vs the rest" on that class's probability.

    None for a class the split has no sample of, or only samples of (the curve needs positives and negatives).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true)
    aucs: list[float | None] = []
    aps: list[float | None] = []
    for c in range(n_classes):
        positive = y == c
        if positive.all() or not positive.any():
            aucs.append(None)
            aps.append(None)
            continue
        aucs.append(float(roc_auc_score(positive, probabilities[:, c])))
        aps.append(float(average_precision_score(positive, probabilities[:, c])))
    return aucs, aps


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.mean(known)), 6) if known else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def accuracy_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                     logits: np.ndarray | None = None) -> Accuracy:
    """Top-1, macro F1, per-class precision/recall/F1 and the confusion matrix (scikit-learn).

    With ``logits`` (N x classes, the model's raw outputs, whose arg-max is ``y_pred``) also the one-vs-rest ROC
    AUC and average precision per class and their unweighted means over the classes that have them, and the
    expected calibration error of the softmax over ``ECE_BINS`` bins.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    aucs: list[float | None] = [None] * len(classes)
    aps: list[float | None] = [None] * len(classes)
    ece = None
    if logits is not None and len(y_true):
        probs = softmax(logits)
        aucs, aps = one_vs_rest(y_true, probs, len(classes))
        ece = round(reliability(y_true, probs).ece, 6)
    per_class = {
        name: ClassMetrics(precision=round(float(precision[i]), 4), recall=round(float(recall[i]), 4),
                           f1=round(float(f1[i]), 4), support=int(support[i]), roc_auc=_round(aucs[i]),
                           average_precision=_round(aps[i]))
        for i, name in enumerate(classes)
    }
    return Accuracy(
        accuracy=round(float(accuracy_score(y_true, y_pred)), 6),
        macro_f1=round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 6),
        per_class=per_class,
        confusion_matrix=confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        n=int(len(y_true)),
        roc_auc=_mean(aucs), average_precision=_mean(aps), ece=ece,
    )
