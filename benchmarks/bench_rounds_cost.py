"""What timing in rounds costs: wall time of `edgetl bench RUN` before rounds (main's tree) and with them.

Each variant runs the same command (latency only: the accuracy pass does not change with rounds) on the same run directory through its own tree (``PYTHONPATH``), the
variants taking turns (A B, B A, ...) so load that drifts on a shared machine hits both alike. Reported: each
variant's median wall time with its min-max, and the median of the per-pair ratios (this tree / main).

    python benchmarks/bench_rounds_cost.py --run runs/gate-noise-build [--main /work/main] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, write  # noqa: E402

HERE = Path(__file__).resolve().parents[1]


def timed_bench(tree: Path, run: Path, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "edgetl.cli", "bench", str(run), "--out", str(out), "--no-report",
                    "--no-accuracy"],
                   cwd=tree, env=env, check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/gate-noise-build")
    parser.add_argument("--main", default="/work/main", help="a tree without rounds (the main branch)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    run = Path(args.run).resolve()
    trees = {"main (one block per row)": Path(args.main).resolve(), "this tree (5 interleaved rounds)": HERE}
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rounds-cost-", dir=RESULTS))
    walls: dict[str, list[float]] = {name: [] for name in trees}
    load: list[float] = []
    for pair in range(args.pairs):
        order = list(trees) if pair % 2 == 0 else list(reversed(trees))
        for name in order:
            load.append(os.getloadavg()[0])
            wall = timed_bench(trees[name], run, work / f"{pair}-{len(walls[name])}-{name.split()[0]}")
            walls[name].append(round(wall, 2))
            print(f"pair {pair} {name:<34} {wall:7.1f} s", flush=True)
    names = list(trees)
    ratios = [b / a for a, b in zip(walls[names[0]], walls[names[1]], strict=True)]
    print(f"\n{'variant':<34} {'median s':>9} {'min-max s':>14}")
    rows = []
    for name in names:
        w = walls[name]
        rows.append({"variant": name, "median_s": statistics.median(w), "min_s": min(w), "max_s": max(w),
                     "walls_s": w})
        print(f"{name:<34} {statistics.median(w):>9.1f} {min(w):>6.1f}-{max(w):<7.1f}")
    print(f"\nper-pair ratio (rounds / main): median {statistics.median(ratios):.3f}, "
          f"min-max {min(ratios):.3f}-{max(ratios):.3f}")
    summary = {"settings": {"run": str(run), "pairs": args.pairs, "command": "edgetl bench RUN --out DIR --no-report --no-accuracy "
                            "(the accuracy pass is the same in both)",
                            "load_average_1min": [round(min(load), 2), round(max(load), 2)]},
               "variants": rows, "ratio_median": round(statistics.median(ratios), 4),
               "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
               "ratios": [round(r, 4) for r in ratios]}
    write("bench_rounds_cost", summary, summary)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
