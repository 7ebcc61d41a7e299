"""Pruning sweep: accuracy against latency over several MACs targets, fp32 and int8, in one run.

One fine-tuned model, then per point (the unpruned model, then each ``--macs`` target) the product stages exactly
as `edgetl build --prune-macs F` runs them: ``edgetl.stages.prune.prune`` (Torch-Pruning, recovery by
distillation from the unpruned model), ``quantize`` (QAT) and ``export`` (ONNX + OpenVINO IR, parity, the int8
proof). Accuracy per artifact is the export stage's, measured in each runtime on the evaluation split; latency is
batch-1 p50 through edgetl's runtime adapters, every (point, runtime, precision) measured once per round, the
rounds interleaved, the median over rounds reported with its spread (min..max of the rounds' p50s), so the ratios
between points are measured side by side. ``--ce-at F`` also recovers the point F with cross-entropy only (fp32
accuracy beside the distilled one). Prints a table and writes ``benchmarks/results/prune_sweep.json`` (everything)
and ``benchmarks/reported/prune_sweep.json`` (the table).

    python benchmarks/prune_sweep.py --data ../shared/datasets/hymenoptera --image-size 128 \\
        --macs 0.75 0.5 0.35 0.25 --epochs 3 --recovery-epochs 3 --threads 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, write  # noqa: E402

COMBOS = (("onnxruntime", "cpu", "onnx"), ("openvino", "CPU", "openvino"))


def _cfg(args: argparse.Namespace, out: Path, **prune: Any) -> Any:
    from edgetl.config import BuildConfig

    return BuildConfig().with_overrides({
        "data.path": args.data, "data.num_workers": 0, "out": str(out),
        "train.backbone": args.backbone, "train.image_size": args.image_size, "train.head_epochs": args.head_epochs,
        "train.epochs": args.epochs, "train.threads": args.threads, "train.seed": args.seed,
        "train.strategy": "warmup_finetune",  # the recipe its reported sweeps were measured with
        "prune.epochs": args.recovery_epochs, "prune.lr": args.recovery_lr,
        "quantize.qat_epochs": args.qat_epochs, "quantize.ptq_baseline": False,
        **{f"prune.{k}": v for k, v in prune.items()},
    })


def _point(args: argparse.Namespace, base: Path, target: Any, macs: float | None, distill: bool = True
           ) -> dict[str, Any]:
    """One point: (prune + recover), QAT, export; returns its facts and artifact paths."""
    from edgetl.fsutil import read_json
    from edgetl.stages.export import export
    from edgetl.stages.prune import prune
    from edgetl.stages.quantize import quantize

    name = "unpruned" if macs is None else f"macs{macs:g}" + ("" if distill else "-ce")
    run = base / name
    if not (run / "train").is_dir():
        shutil.copytree(base / "finetune" / "train", run / "train")
    started = time.perf_counter()
    facts: dict[str, Any] = {"point": name, "macs_target": macs, "recovery": None}
    float_dir = run / "train"
    if macs is not None:
        cfg = _cfg(args, run, enabled=True, macs_fraction=macs, distill=distill)
        if not done(run / "prune"):
            prune(cfg, target, run / "train", run / "prune")
        float_dir = run / "prune"
        metrics = read_json(run / "prune" / "metrics.json")
        facts.update(recovery=metrics["recovery"], ratio=metrics["prune"]["ratio"],
                     pruned_val=metrics["pruned_val_accuracy"], recovered_val=metrics["best_val_accuracy"],
                     best_epoch=metrics["best_epoch"], recovery_history=metrics["epochs"])
    else:
        cfg = _cfg(args, run)
    if not distill:  # the cross-entropy comparison: fp32 accuracy only
        info = read_json(run / "prune" / "manifest.json")["info"]
        facts.update(macs=info["models"][0]["macs"], params=info["models"][0]["params"],
                     torch_fp32_eval=info["eval_accuracy"], wall_s=round(time.perf_counter() - started, 1))
        return facts
    if not done(run / "quantize"):
        quantize(cfg, target, float_dir, run / "quantize")
    if not done(run / "export"):
        export(cfg, target, float_dir, run / "quantize", run / "export")
    info = read_json(run / "export" / "manifest.json")["info"]
    facts.update(macs=info["macs"], params=info["params"],
                 torch_accuracy=read_json(run / "quantize" / "metrics.json")["accuracy"],
                 qat_kept_epoch=read_json(run / "quantize" / "metrics.json")["qat"].get("kept_epoch"),
                 wall_s=round(time.perf_counter() - started, 1), artifacts={})
    for a in info["artifacts"]:
        facts["artifacts"][a["name"]] = {"path": str(run / "export" / a["path"]), "format": a["format"],
                                         "precision": a["precision"], "accuracy": (a.get("parity") or {}).get("accuracy"),
                                         "int8_ops": a.get("int8_ops"), "float_ops": a.get("float_ops")}
    return facts


def done(stage_dir: Path) -> bool:
    """A stage of an earlier, interrupted sweep with the same settings (delete OUT to start over)."""
    return (stage_dir / "manifest.json").is_file()


def _p50(runtime: str, device: str, path: Path, precision: str, size: int, threads: int, seconds: float) -> float:
    from edgetl.bench.measure import TimingPlan, latency_stats, timed_runs
    from edgetl.runtimes import RUNTIMES

    session = RUNTIMES.get(runtime).load(path, device, precision, threads)
    x = {next(iter(session.inputs)): np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)}
    samples = timed_runs(lambda: session.run(x), TimingPlan(warmup=10, min_iterations=30, min_time_s=seconds))
    session.close()
    return latency_stats(samples).p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--recovery-epochs", type=int, default=3)
    parser.add_argument("--recovery-lr", type=float, default=1e-3)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--macs", type=float, nargs="+", default=[0.75, 0.5, 0.35, 0.25])
    parser.add_argument("--ce-at", type=float, default=None, help="also recover this MACs point with CE only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "prune_sweep_runs"))
    args = parser.parse_args()

    import torch

    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    torch.set_num_threads(args.threads)
    base = Path(args.out)
    target = load_target("cpu")
    started = time.perf_counter()
    if not (base / "finetune" / "train" / "manifest.json").is_file():
        finetune(_cfg(args, base / "finetune"), target, base / "finetune" / "train")
    points = [_point(args, base, target, None)]
    for macs in args.macs:
        points.append(_point(args, base, target, macs))
        print(f"point {points[-1]['point']} done ({points[-1]['wall_s']} s)", flush=True)
    ce = _point(args, base, target, args.ce_at, distill=False) if args.ce_at is not None else None

    # latency: every (point, runtime, precision) once per round, rounds interleaved
    p50s: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for point in points:
            for runtime, device, fmt in COMBOS:
                for name, a in point["artifacts"].items():
                    if a["format"] == fmt:
                        p50s.setdefault((point["point"], name), []).append(
                            _p50(runtime, device, Path(a["path"]), a["precision"], args.image_size, args.threads,
                                 args.seconds))
    rows = []
    for point in points:
        for name, a in point["artifacts"].items():
            rounds = p50s[(point["point"], name)]
            a["p50_rounds_ms"] = rounds
            rows.append({"point": point["point"], "artifact": name, "macs_m": round(point["macs"] / 1e6, 1),
                         "macs_pct": round(100 * point["macs"] / points[0]["macs"], 1),
                         "params_m": round(point["params"] / 1e6, 2), "accuracy": a["accuracy"],
                         "int8_ops": a["int8_ops"], "float_ops": a["float_ops"],
                         "p50_ms": round(statistics.median(rounds), 3),
                         "p50_spread_ms": [round(min(rounds), 3), round(max(rounds), 3)]})
    ref = {r["artifact"]: r["p50_ms"] for r in rows if r["point"] == "unpruned"}
    for r in rows:
        r["p50_vs_unpruned_same_artifact"] = round(r["p50_ms"] / ref[r["artifact"]], 3)
        fp32 = ref[r["artifact"].replace("-int8-qat", "-fp32")]
        r["speedup_vs_unpruned_fp32"] = round(fp32 / r["p50_ms"], 2)

    header = f"{'point':<12} {'artifact':<18} {'MACs':>8} {'%':>6} {'params':>7} {'acc':>7} {'p50 ms':>8} " \
             f"{'spread':>15} {'x unpr.':>8} {'speedup':>8} {'int8/all':>9}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        ops = "-" if r["int8_ops"] is None else f"{r['int8_ops']}/{r['int8_ops'] + (r['float_ops'] or 0)}"
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        print(f"{r['point']:<12} {r['artifact']:<18} {r['macs_m']:>7.1f}M {r['macs_pct']:>5.1f}% "
              f"{r['params_m']:>6.2f}M {acc:>7} {r['p50_ms']:>8.3f} "
              f"{r['p50_spread_ms'][0]:>7.3f}-{r['p50_spread_ms'][1]:<7.3f} {r['p50_vs_unpruned_same_artifact']:>8.3f} "
              f"{r['speedup_vs_unpruned_fp32']:>7.2f}x {ops:>9}")
    recovery = [{k: p.get(k) for k in ("point", "ratio", "recovery", "pruned_val", "recovered_val", "best_epoch")}
                for p in points[1:]]
    print("\nrecovery (val top-1): " + "; ".join(
        f"{p['point']}: {100 * p['pruned_val']:.2f}% pruned -> {100 * p['recovered_val']:.2f}% (epoch "
        f"{p['best_epoch']})" for p in recovery))
    if ce is not None:
        same = next((p for p in points if p["point"] == f"macs{args.ce_at:g}"), None)
        print(f"cross-entropy only at {args.ce_at:g} MACs: torch fp32 eval {100 * ce['torch_fp32_eval']:.2f}% "
              f"(val {100 * ce['recovered_val']:.2f}%) vs distilled "
              f"{100 * same['torch_accuracy']['fp32']:.2f}%" if same else "")
    settings = {k: v for k, v in vars(args).items()}
    summary = {"settings": settings, "rows": rows, "recovery": recovery,
               "ce_only": None if ce is None else {k: ce.get(k) for k in
                                                   ("point", "macs", "torch_fp32_eval", "pruned_val",
                                                    "recovered_val", "best_epoch")},
               "wall_s": round(time.perf_counter() - started, 1)}
    write("prune_sweep", {"settings": settings, "points": points, "ce_only": ce, "rows": rows}, summary)


if __name__ == "__main__":
    main()
