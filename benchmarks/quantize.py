"""QAT vs PTQ vs fp32 on real data: efficientnet_lite0 on hymenoptera and flowers5, through edgetl's own stages.

Per data set, in one run: ``edgetl.stages.quantize.quantize`` (QAT + PTQ) on a fine-tuned train directory, then
``edgetl.stages.export.export`` (ONNX fp32/int8 QDQ, OpenVINO IR), whose parity pass runs every artifact on the
evaluation split in ONNX Runtime and OpenVINO. Reported: accuracy of fp32 / QAT / PTQ in both runtimes, top-1
agreement with the torch model, int8 conv counts in each runtime's executable graph, file sizes, and batch-1 p50
latency of int8 vs fp32 (OpenVINO and ONNX Runtime). Writes ``benchmarks/results/quantize.json`` and copies it to
``benchmarks/reported/quantize.json``.

The fine-tuned model comes from ``--train-dir DATASET=PATH``, else from the fine-tune benchmark's run
(``benchmarks/results/train/<dataset>-pretrained/train`` or ``benchmarks/results/runs/<dataset>/train``), else
this script trains briefly itself (a short recipe, recorded in the JSON as such).

    python benchmarks/quantize.py                          # both data sets
    python benchmarks/quantize.py --only hymenoptera --qat-max-steps 40
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGETL_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"
DATASETS = {"hymenoptera": 224, "flowers5": 160}  # image size when this script has to train itself
# (the warm-up recipe, which its reported figures were measured with: train.strategy's default then)
BRIEF_RECIPE = {"train.strategy": "warmup_finetune", "train.head_epochs": 1, "train.epochs": 2,
                "train.max_steps_per_epoch": 40}


def find_train_dir(dataset: str, given: dict[str, Path]) -> tuple[Path | None, str]:
    if dataset in given:
        return given[dataset], "--train-dir"
    for candidate in (RESULTS / "train" / f"{dataset}-pretrained" / "train", RESULTS / "runs" / dataset / "train"):
        if (candidate / "manifest.json").is_file():
            return candidate, f"fine-tune benchmark run ({candidate.relative_to(ROOT)})"
    return None, ""


def brief_training(dataset: str, out: Path) -> Path:
    from edgetl.config import BuildConfig
    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    cfg = BuildConfig().with_overrides({"data.path": str(SHARED / "datasets" / dataset),
                                        "train.image_size": DATASETS[dataset], **BRIEF_RECIPE})
    finetune(cfg, load_target("cpu"), out)
    return out


def p50_ms(run: Any, x: Any, warmup: int = 20, iterations: int = 200) -> float:
    import numpy as np

    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        run(x)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def latency(export_dir: Path, artifacts: list[dict[str, Any]], size: int, threads: int) -> dict[str, float]:
    """Batch-1 p50 per artifact, ONNX Runtime and OpenVINO CPU (f32 hint), ``threads`` threads, interleaved twice."""
    import numpy as np
    import onnxruntime as ort
    import openvino as ov

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    runners = {}
    for a in artifacts:
        path = export_dir / a["path"]
        if a["format"] == "onnx":
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            runners[a["name"]] = lambda b, s=sess: s.run(None, {"input": b})
        else:
            core = ov.Core()
            model = core.read_model(str(path))
            model.reshape([1, 3, size, size])
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": threads,
                                                         "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            runners[a["name"]] = lambda b, r=request: r.infer({0: b})
    results: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(2):  # interleaved rounds: a neighbour's burst on the shared cores hits every row alike
        for name, run in runners.items():
            results[name].append(p50_ms(run, x))
    return {name: round(min(v), 3) for name, v in results.items()}


def run_dataset(dataset: str, given: dict[str, Path], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edgetl.config import BuildConfig
    from edgetl.fsutil import read_json
    from edgetl.manifest import read_manifest
    from edgetl.stages.export import export
    from edgetl.stages.quantize import input_hash, quantize
    from edgetl.targets import load_target

    row: dict[str, Any] = {"dataset": dataset, "backbone": "efficientnet_lite0"}
    if not (SHARED / "datasets" / dataset).is_dir():
        return {**row, "status": "skipped", "reason": f"{SHARED / 'datasets' / dataset} not found"}
    train_dir, origin = find_train_dir(dataset, given)
    if train_dir is None:
        origin = f"trained briefly by this script ({BRIEF_RECIPE}): not the fine-tune benchmark's recipe"
        train_dir = brief_training(dataset, work / dataset / "train")
    row["train_dir"], row["train_origin"] = str(train_dir), origin
    overrides: dict[str, Any] = {"data.num_workers": args.workers}
    if args.qat_max_steps:
        overrides["quantize.max_steps_per_epoch"] = args.qat_max_steps
    if args.min_agreement is not None:
        overrides["export.min_top1_agreement"] = args.min_agreement
    if args.qat_epochs:
        overrides["quantize.qat_epochs"] = args.qat_epochs
    cfg = BuildConfig().with_overrides(overrides)
    target = load_target("cpu")
    quant_dir, export_dir = work / dataset / "quantize", work / dataset / "export"
    train_hash = read_manifest(train_dir).hash
    if args.reuse and _manifest_field(quant_dir, "input_hash") == input_hash(cfg, read_manifest(train_dir)):
        row["quantize_reused"] = True  # an earlier run of this script with the same inputs (it was interrupted)
    else:
        start = time.perf_counter()
        quantize(cfg, target, train_dir, quant_dir)
        row["quantize_wall_s"] = round(time.perf_counter() - start, 1)
    quant_hash = read_manifest(quant_dir).hash
    if args.reuse and (_manifest_field(export_dir, "inputs") or {}).get("quantize/manifest.json") == quant_hash:
        row["export_reused"] = True
    else:
        start = time.perf_counter()
        export(cfg, target, train_dir, quant_dir, export_dir)
        row["export_wall_s"] = round(time.perf_counter() - start, 1)
    metrics = read_json(quant_dir / "metrics.json")
    manifest = read_json(export_dir / "manifest.json")
    if manifest["info"]["source_manifest"] != train_hash:
        raise SystemExit(f"{export_dir} was exported from another train dir than {train_dir}; rerun with --no-reuse")
    artifacts = manifest["info"]["artifacts"]
    size = manifest["info"]["preprocess"]["image_size"]
    lat = latency(work / dataset / "export", artifacts, size, args.threads)
    row.update({
        "status": "ok", "eval_split": metrics["eval_split"], "image_size": size,
        "quantize_config": cfg.quantize.model_dump(), "torch_accuracy": metrics["accuracy"],
        "quantize_wall_time_s": metrics["wall_time_s"],
        "pads_folded": manifest["info"]["pads_folded"],
        "artifacts": [{
            "name": a["name"], "precision": a["precision"], "source": a["source"], "size_bytes": a["size_bytes"],
            "runtime": a["parity"]["runtime"], "accuracy": a["parity"]["accuracy"], "n": a["parity"]["n"],
            "top1_agreement": a["parity"]["top1_agreement"], "max_logit_diff": a["parity"]["max_logit_diff"],
            "int8_ops": a["int8_ops"], "float_ops": a["float_ops"], "p50_ms_b1": lat.get(a["name"]),
        } for a in artifacts],
        "latency_threads": args.threads, "export_config": cfg.export.model_dump(),
    })
    return row


def _manifest_field(stage_dir: Path, name: str) -> Any:
    from edgetl.fsutil import read_json

    path = stage_dir / "manifest.json"
    return read_json(path).get(name) if path.is_file() else None


def checks(row: dict[str, Any]) -> dict[str, Any]:
    """The issue's done-when criteria, evaluated on the measured row."""
    by = {a["name"]: a for a in row["artifacts"]}
    out: dict[str, Any] = {}
    for fmt in ("onnx", "openvino"):
        fp32, qat, ptq = by.get(f"{fmt}-fp32"), by.get(f"{fmt}-int8-qat"), by.get(f"{fmt}-int8-ptq")
        if fp32 and qat:
            out[f"{fmt}: QAT within 0.5 pt of fp32"] = 100 * (fp32["accuracy"] - qat["accuracy"]) <= 0.5
        if qat and ptq:
            out[f"{fmt}: QAT not below PTQ"] = qat["accuracy"] >= ptq["accuracy"]
    int8 = [a for a in row["artifacts"] if a["precision"] == "int8"]
    out["agreement >= 99% (every artifact)"] = all(a["top1_agreement"] >= 0.99 for a in row["artifacts"])
    out["all convs int8 (every int8 artifact)"] = all(a["float_ops"] == 0 for a in int8)
    fp32_onnx = by.get("onnx-fp32")
    if fp32_onnx:
        out["int8 ONNX <= 30% of fp32"] = all(by[n]["size_bytes"] <= 0.3 * fp32_onnx["size_bytes"]
                                               for n in ("onnx-int8-qat", "onnx-int8-ptq") if n in by)
    return out


def main() -> None:
    import faulthandler

    faulthandler.enable()  # a crash in a native library prints the Python stack instead of vanishing
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(DATASETS), help="run only this data set")
    parser.add_argument("--train-dir", action="append", default=[], metavar="DATASET=PATH",
                        help="a fine-tuned train/ directory for DATASET (repeatable)")
    parser.add_argument("--qat-max-steps", type=int, default=None, help="cap QAT steps per epoch (time budget)")
    parser.add_argument("--qat-epochs", type=int, default=None, help="QAT epochs (default: the config's)")
    parser.add_argument("--min-agreement", type=float, default=None,
                        help="export parity threshold for this run (default: the config's 0.99); recorded in the JSON")
    parser.add_argument("--threads", type=int, default=2, help="threads for the latency rows")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false",
                        help="rerun quantize/export even when an earlier run of this script had the same inputs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("edgetl").setLevel(logging.INFO)  # the exporter's own INFO logs are thousands of lines
    given = {}
    for item in args.train_dir:
        name, _, path = item.partition("=")
        given[name] = Path(path)

    import torch

    from edgetl.fsutil import read_json, write_json
    from edgetl.manifest import library_versions

    work = RESULTS / "quantize"
    out_json = RESULTS / "quantize.json"
    previous = {r["dataset"]: r for r in read_json(out_json)["rows"]} if out_json.is_file() else {}
    rows = dict(previous)
    for dataset in args.only or list(DATASETS):
        row = run_dataset(dataset, given, work, args)
        if row.get("status") == "ok":
            row["checks"] = checks(row)
        rows[dataset] = row
        summary = {
            "benchmark": "quantize",
            "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                     "torch_threads": torch.get_num_threads()},
            "versions": library_versions(),
            "note": "2 CPU cores shared with other jobs: latencies are noisy, ratios more stable than absolutes",
            "rows": [rows[d] for d in DATASETS if d in rows],
        }
        write_json(out_json, summary)  # after every data set, so an interrupted run keeps what it measured

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    for row in summary["rows"]:
        if row.get("status") != "ok":
            console.print(f"{row['dataset']}: skipped: {row.get('reason')}")
            continue
        table = Table(title=f"{row['dataset']} ({row['eval_split']} split, {row['artifacts'][0]['n']} images, "
                            f"{row['image_size']} px) - train dir: {row['train_origin']}")
        for col in ("artifact", "runtime", "accuracy", "agreement", "max |dlogit|", "int8 convs", "size MB",
                    "p50 ms b1"):
            table.add_column(col)
        for a in row["artifacts"]:
            table.add_row(a["name"], a["runtime"], f"{100 * a['accuracy']:.2f}%", f"{100 * a['top1_agreement']:.2f}%",
                          f"{a['max_logit_diff']:.3g}", f"{a['int8_ops']}/{a['int8_ops'] + a['float_ops']}",
                          f"{a['size_bytes'] / 1e6:.2f}", "-" if a["p50_ms_b1"] is None else f"{a['p50_ms_b1']:.2f}")
        console.print(table)
        by = {a["name"]: a for a in row["artifacts"]}
        for fmt in ("openvino", "onnx"):
            for src in ("qat", "ptq"):
                i8, f32 = by.get(f"{fmt}-int8-{src}"), by.get(f"{fmt}-fp32")
                if i8 and f32 and i8["p50_ms_b1"] and f32["p50_ms_b1"]:
                    console.print(f"  {fmt} int8 ({src}) / fp32 p50 at batch 1: {i8['p50_ms_b1'] / f32['p50_ms_b1']:.2f}x")
        console.print(f"  torch accuracy: { {k: round(100 * v, 2) for k, v in row['torch_accuracy'].items()} }")
        for check, ok in row["checks"].items():
            console.print(f"  [{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] {check}")
    REPORTED.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_json, REPORTED / "quantize.json")
    print(f"results: {out_json} (copied to {REPORTED / 'quantize.json'})")


if __name__ == "__main__":
    main()
