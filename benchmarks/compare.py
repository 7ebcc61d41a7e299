"""Issue 17's "what transfer bought" figures: `edgetl compare` on a shared data set, as a user would run it.

Runs the command itself (``python -m edgetl.cli compare``, the default recipe and the cpu target's 224 px) in a
subprocess, prints its table, and copies its ``compare.json`` (with the command, the host and the edgetl commit)
to ``benchmarks/reported/compare_<data set>.json`` (its ``compare.png`` beside it).

    nice -n 5 python benchmarks/compare.py --data ../shared/datasets/hymenoptera

Wall times are of one run each on the host named in the JSON: on a shared machine they move with its load, so
read them as rough proportions, not speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "hymenoptera"))
    parser.add_argument("--out", default=None)
    parser.add_argument("--extra", default="", help="extra compare flags, e.g. '--epochs 4'")
    args = parser.parse_args()
    name = f"compare_{Path(args.data).name}"
    out = Path(args.out or RESULTS / "runs" / name)
    command = [sys.executable, "-m", "edgetl.cli", "compare", "--data", args.data, "--out", str(out),
               *args.extra.split()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    (RESULTS / f"{name}.log").write_text(proc.stdout + proc.stderr)
    print(proc.stdout[-4000:])
    if proc.returncode != 0:
        sys.exit(f"edgetl compare failed (exit {proc.returncode}): {(proc.stderr.strip().splitlines() or [''])[-1]}")
    from edgetl.host import host_facts

    payload = json.loads((out / "compare.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    payload.update({
        "command": "edgetl " + " ".join(command[3:]).replace(str(ROOT.parent), ".."),
        "total_s": round(seconds, 1),
        "host": {"cpu": host_facts().get("cpu"), "cores": os.cpu_count(),
                 "load_avg_1m_at_end": round(os.getloadavg()[0], 1)},
        "commit": commit.stdout.strip(),
    })
    REPORTED.mkdir(parents=True, exist_ok=True)
    path = REPORTED / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    shutil.copyfile(out / "compare.png", REPORTED / f"{name}.png")  # the command's own plot, beside its figures
    print(f"{'strategy':<20} {'top-1 on ' + payload['eval_split']:>14} {'wall s':>8}")
    for r in payload["strategies"]:
        print(f"{r['strategy']:<20} {100 * r['eval_accuracy']:>13.2f}% {r['wall_time_s']:>8.1f}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
