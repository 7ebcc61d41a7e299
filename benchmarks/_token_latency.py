"""Token-input latency in interleaved rounds, shared by the text benchmarks (text_sst2.py, text_int8_routes.py)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np


def token_inputs(batch: int, seq_len: int) -> dict[str, np.ndarray]:
    """Seeded BERT inputs: random word-piece ids between [CLS] and [SEP], attention on every position."""
    rng = np.random.default_rng(0)
    x = {"input_ids": rng.integers(1000, 20000, size=(batch, seq_len), dtype=np.int64),
         "attention_mask": np.ones((batch, seq_len), dtype=np.int64)}
    x["input_ids"][:, 0], x["input_ids"][:, -1] = 101, 102
    return x


def interleaved_rounds(runs: dict[str, Any], x: dict[str, np.ndarray], rounds: int, iters: int,
                       warmup: int = 3) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per run, each round's median and 10th-percentile latency in ms; the runs alternate within every round
    (A B A B ...), so a neighbour's load hits them alike."""
    for run in runs.values():
        for _ in range(warmup):
            run(x)
    p50: dict[str, list[float]] = {n: [] for n in runs}
    p10: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times = []
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                run(x)
                times.append((time.perf_counter_ns() - t0) / 1e6)
            p50[name].append(statistics.median(times))
            p10[name].append(float(np.percentile(times, 10)))
    return p50, p10
