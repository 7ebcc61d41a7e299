"""Issue 6's figures: `edgetl build` end to end, an unchanged rerun, and `edgetl predict` on the bundle.

Runs the real CLI in subprocesses (as a user would), times each, and checks that predict's accuracy on the
evaluation images equals the accuracy results.json states for the same artifact.

    python benchmarks/build_and_predict.py --target jetson --data ../shared/datasets/hymenoptera
    python benchmarks/build_and_predict.py --target cpu   # built-in digits (what `make demo` runs)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"
EDGETL = [sys.executable, "-m", "edgetl.cli"]


def run(args: list[str], log: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    log.write_text(proc.stdout + proc.stderr)
    return proc.returncode, seconds, proc.stdout + proc.stderr


def main() -> None:
    import faulthandler

    faulthandler.enable()  # a crash in a native library prints the Python stack instead of vanishing
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="jetson")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--out", default=None)
    parser.add_argument("--extra", default="", help="extra build flags, e.g. '--image-size 96 --epochs 4'")
    args = parser.parse_args()
    name = f"build_{args.target}_{Path(args.data).name}"
    out = Path(args.out or RESULTS / "runs" / name)
    shutil.rmtree(out, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    build = [*EDGETL, "build", "--target", args.target, "--data", args.data, "--out", str(out),
             "--no-budget-check", *args.extra.split()]
    rc1, first_s, _ = run(build, RESULTS / f"{name}.build.log")
    rc2, rerun_s, rerun_out = run(build, RESULTS / f"{name}.rerun.log")
    reused = re.findall(r"\[(\w+)\] reused", rerun_out)
    if not (out / "bench" / "results.json").is_file():
        failed = {"target": args.target, "data": args.data, "build_rc": rc1, "build_s": round(first_s, 1),
                  "rerun_rc": rc2, "rerun_s": round(rerun_s, 1), "rerun_reused": reused,
                  "error": (rerun_out.strip().splitlines() or [""])[-1][:500]}
        print(f"build failed (rc {rc1}, rerun rc {rc2}): {failed['error']}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(failed, indent=2) + "\n")
        sys.exit(1)
    results = json.loads((out / "bench" / "results.json").read_text())
    eval_dir = Path(args.data) / results["eval_split"] if args.data != "digits" else None
    row: dict = {"target": args.target, "data": args.data, "build_rc": rc1, "build_s": round(first_s, 1),
                 "rerun_rc": rc2, "rerun_s": round(rerun_s, 1), "rerun_reused": reused,
                 "bundle_files": sorted(p.name for p in (out / "bundle").iterdir()),
                 "tar_gz": (out / "bundle.tar.gz").is_file(),
                 "report_html": (out / "report" / "report.html").is_file(),
                 "budgets": json.loads((out / "budgets.json").read_text())}
    if eval_dir is not None:
        rc3, predict_s, pred_out = run([*EDGETL, "predict", str(out / "bundle.tar.gz"), str(eval_dir)],
                                       RESULTS / f"{name}.predict.log")
        line = next(ln for ln in pred_out.splitlines() if ln.startswith("accuracy:"))
        correct, total = (int(v) for v in line.split()[1].split("/"))
        artifact = line.split("(artifact ")[1].split(",")[0]
        runtime = "onnxruntime" if artifact.startswith("onnx") else "openvino"
        stated = [r for r in results["rows"] if r["name"] == artifact and r["runtime"] == runtime
                  and r["status"] == "ok"]
        row.update({"predict_rc": rc3, "predict_s": round(predict_s, 1), "predict_artifact": artifact,
                    "predict_accuracy": correct / total, "predict_images": total,
                    "report_accuracy": stated[0]["accuracy"] if stated else None})
    rows = [{k: r.get(k) for k in ("name", "runtime", "device", "precision", "proxy", "status", "accuracy")}
            | {"p50_ms": (r.get("latency_ms") or {}).get("p50")} for r in results["rows"]]
    row["results_rows"] = rows
    print(f"build {first_s:.0f}s (rc {rc1}); unchanged rerun {rerun_s:.1f}s (rc {rc2}), reused: {', '.join(reused)}")
    if "predict_accuracy" in row:
        print(f"predict on {row['predict_images']} {results['eval_split']} images with {row['predict_artifact']}: "
              f"{100 * row['predict_accuracy']:.2f}% (report states {100 * (row['report_accuracy'] or 0):.2f}%)")
    print(f"{'artifact':<22} {'runtime':<18} {'prec':<5} {'status':<8} {'acc':>7} {'p50 ms':>8}")
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}"
        p50 = "-" if r["p50_ms"] is None else f"{r['p50_ms']:.2f}"
        rt = f"{r['runtime']}:{r['device']}" + ("*" if r["proxy"] else "")
        print(f"{r['name']:<22} {rt:<18} {r['precision']:<5} {r['status']:<8} {acc:>7} {p50:>8}")
    print("(* = host proxy for a device that is not this host)")
    REPORTED.mkdir(parents=True, exist_ok=True)
    for folder in (RESULTS, REPORTED):
        (folder / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
