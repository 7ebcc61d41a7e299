"""edgetl's OpenVINO p50 latency vs OpenVINO's own benchmark_app at the same settings.

Same IR, CPU, f32 inference precision, sync API, one request, one stream, batch 1, N threads, T seconds per
measurement. The two tools run interleaved (their order alternates per round) in one process tree, several rounds,
so machine load drifts hit both alike. Done when edgetl's p50 is within +-5 % of benchmark_app's.

    python benchmarks/bench_vs_benchmark_app.py [--threads 1,2] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, SIZE, convert_ir, edgetl_p50, export_onnx, write  # noqa: E402

MODELS = ("efficientnet_lite0", "resnet18")
TOLERANCE = 0.05


def benchmark_app_p50(xml: Path, threads: int, seconds: float) -> dict:
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if tool is None:
        raise SystemExit("benchmark_app not found (it ships with the openvino wheel)")
    cmd = [tool, "-m", str(xml), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1",
           "-nthreads", str(threads), "-infer_precision", "f32", "-t", str(int(round(seconds))), "-shape", f"[1,3,{SIZE},{SIZE}]"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", out)
    count = re.search(r"Count:\s+(\d+)", out)
    if match is None:
        raise SystemExit(f"cannot find the median in benchmark_app's output:\n{out[-2000:]}")
    value = float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)
    return {"p50_ms": value, "iterations": int(count.group(1)) if count else None, "command": " ".join(cmd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-vs-app-", dir=RESULTS))
    irs = {m: convert_ir(export_onnx(m, work / f"{m}.onnx"), work / "ir" / f"{m}.xml") for m in MODELS}

    runs: list[dict] = []
    for rnd in range(args.rounds):
        for model in MODELS:
            for threads in thread_counts:
                order = ("edgetl", "benchmark_app") if rnd % 2 == 0 else ("benchmark_app", "edgetl")
                for tool in order:
                    if tool == "edgetl":
                        res = edgetl_p50("openvino", "CPU", irs[model], "fp32", threads, args.seconds)
                    else:
                        res = benchmark_app_p50(irs[model], threads, args.seconds)
                    runs.append({"round": rnd, "model": model, "threads": threads, "tool": tool, **res})
                    print(f"round {rnd} {model:<19} threads {threads} {tool:<14} p50 {res['p50_ms']:.3f} ms",
                          flush=True)

    rows = []
    print(f"\n{'model':<19} {'threads':>7} {'edgetl p50':>11} {'app p50':>9} {'ratio':>7}  per-round ratios  verdict")
    for model in MODELS:
        for threads in thread_counts:
            mine = [r["p50_ms"] for r in runs if r["model"] == model and r["threads"] == threads
                    and r["tool"] == "edgetl"]
            theirs = [r["p50_ms"] for r in runs if r["model"] == model and r["threads"] == threads
                      and r["tool"] == "benchmark_app"]
            ratio = statistics.median(mine) / statistics.median(theirs)
            per_round = [round(a / b, 3) for a, b in zip(mine, theirs, strict=True)]
            ok = abs(ratio - 1.0) <= TOLERANCE
            rows.append({"model": model, "threads": threads, "edgetl_p50_ms": round(statistics.median(mine), 4),
                         "benchmark_app_p50_ms": round(statistics.median(theirs), 4), "ratio": round(ratio, 4),
                         "per_round_ratio": per_round, "within_5_percent": ok})
            print(f"{model:<19} {threads:>7} {statistics.median(mine):>9.3f}ms {statistics.median(theirs):>7.3f}ms "
                  f"{ratio:>7.3f}  {per_round}  {'ok' if ok else 'OUTSIDE +-5%'}")
    settings = {"device": "CPU", "api": "sync", "batch": 1, "streams": 1, "infer_precision": "f32",
                "seconds": args.seconds, "rounds": args.rounds, "threads": thread_counts,
                "edgetl": "RUNTIMES['openvino'].load(...) + stages.measure.timed_runs (warm-up 20)",
                "benchmark_app": runs[1]["command"] if len(runs) > 1 else ""}
    write("bench_vs_benchmark_app", {"settings": settings, "runs": runs, "summary": rows},
          {"settings": settings, "summary": rows,
           "all_within_5_percent": all(r["within_5_percent"] for r in rows)})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
