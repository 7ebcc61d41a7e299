"""Issue 16's figures: MiniLM-L6 fine-tuned on SST-2 through `edgetl build`, a frozen-encoder linear probe, and
int8 by its routes (dynamic int8 in ONNX Runtime and in OpenVINO, static QDQ from PTQ, QAT) side by side.

    python benchmarks/text_sst2.py                       # build (cached by edgetl), probe, latency, predict check
    python benchmarks/text_sst2.py --epochs 2 --skip-probe
    python benchmarks/text_sst2.py --threads 2 --min-agreement 0.97 --force export   # a cached build's later stages

The build runs the real CLI in a subprocess, as a user would, with the splits as given (train/dev/test). Latency
ratios are int8 p50 over fp32 p50 at batch 1, measured in interleaved rounds (each round times every model once,
in turn) so that the machine's load changes hit all models alike; the figure is the median of the per-round ratios
with its min-max spread. Writes benchmarks/results/text_sst2.json and a copy of the summary in
benchmarks/reported/text_sst2.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _token_latency import interleaved_rounds, token_inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"
EDGETL = [sys.executable, "-m", "edgetl.cli"]
DATA = ROOT.parent / "shared" / "datasets" / "sst2"

CONFIG = """\
data: {{path: {data}, num_workers: 0}}
train: {{backbone: minilm_l6, max_seq_len: {max_seq_len}, batch_size: 32, head_epochs: 1, head_lr: 3.0e-3,
         epochs: {epochs}, lr: 5.0e-4, backbone_lr: {backbone_lr}, warmup_ratio: 0.1, patience: 2, threads: {threads},
         max_steps_per_epoch: {max_steps}}}
quantize: {{qat_epochs: 1, qat_lr: 2.0e-5, calibration_images: 256, max_steps_per_epoch: {qat_steps}}}
export: {{min_top1_agreement: {min_agreement}}}
bench: {{warmup: 5, min_iterations: 30, min_time_s: 1.0, batch_sizes: [1, 8]}}
"""


def sh(args: list[str], log: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    return proc.returncode, time.perf_counter() - start, log.read_text()


# ------------------------------------------------------------------------------------------------ the probe
def linear_probe(data: Path, max_seq_len: int, threads: int) -> dict[str, Any]:
    """Frozen all-MiniLM-L6-v2 (mean-pooled) + logistic regression, C chosen on dev; test accuracy."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from edgetl.backbones import create_model, get_backbone
    from edgetl.backbones.text import encode_batch, load_tokenizer
    from edgetl.data.text import read_text_dataset

    torch.set_num_threads(threads)
    index = read_text_dataset(data)
    model = create_model("minilm_l6", 2, "default").eval()
    tokenizer = load_tokenizer(get_backbone("minilm_l6"))  # type: ignore[arg-type]
    started = time.perf_counter()

    def embed(rows: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        out = np.zeros((len(rows), 384), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(order), 64):
                idx = order[s : s + 64]
                ids, mask = encode_batch(tokenizer, [rows[i][0] for i in idx], max_seq_len)
                out[idx] = model.embed(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        return out, np.asarray([y for _, y in rows])

    x = {split: embed(rows) for split, rows in index.splits.items()}
    best = None
    for c in (0.1, 0.3, 1.0, 3.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=2000).fit(*x["train"])
        dev = clf.score(*x["val"])
        if best is None or dev > best[0]:
            best = (dev, c, clf)
    assert best is not None
    dev, c, clf = best
    return {"test_accuracy": round(float(clf.score(*x["test"])), 4), "dev_accuracy": round(float(dev), 4), "C": c,
            "max_seq_len": max_seq_len, "wall_s": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------------------------ latency
def sessions(export_dir: Path, threads: int, dynamic_path: Path) -> dict[str, Any]:
    """name -> callable(inputs) for every model compared; ONNX Runtime and OpenVINO CPU."""
    import onnxruntime as ort
    import openvino as ov

    runs: dict[str, Any] = {}
    for name, file in (("ort fp32", "model_fp32.onnx"), ("ort int8 qat (QDQ)", "model_int8_qat.onnx"),
                       ("ort int8 ptq (QDQ)", "model_int8_ptq.onnx"),
                       ("ort int8 dynamic (fused)", "model_int8_dynamic.onnx")):
        if (export_dir / file).is_file():
            runs[name] = _ort(export_dir / file, threads, ort)
    runs["ort int8 dynamic (untuned)"] = _ort(dynamic_path, threads, ort)
    core = ov.Core()
    for name, file in (("ov fp32", "openvino/model_fp32.xml"), ("ov int8 qat", "openvino/model_int8_qat.xml"),
                       ("ov int8 ptq", "openvino/model_int8_ptq.xml"),
                       ("ov int8 dynamic", "openvino/model_int8_dynamic.xml")):
        if (export_dir / file).is_file():
            runs[name] = _ov(export_dir / file, threads, core)
    return runs


def _ov(xml: Path, threads: int, core: Any = None) -> Any:
    import openvino as ov

    compiled = (core or ov.Core()).compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                   "INFERENCE_PRECISION_HINT": "f32",
                                                                   "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x, r=request: r.infer(x)


def _ort(path: Path, threads: int, ort: Any) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, x)


def interleaved_p50(runs: dict[str, Any], seq_len: int, rounds: int, iters: int,
                    batch: int = 1) -> dict[str, dict[str, Any]]:
    per_round, _ = interleaved_rounds(runs, token_inputs(batch, seq_len), rounds, iters, warmup=5)
    out: dict[str, dict[str, Any]] = {}
    for name, p50s in per_round.items():
        base = per_round["ov fp32" if name.startswith("ov") else "ort fp32"]
        ratios = [a / b for a, b in zip(p50s, base, strict=True)]
        out[name] = {"p50_ms_median": round(statistics.median(p50s), 3),
                     "ratio_median": round(statistics.median(ratios), 3),
                     "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3)}
    return out


def dynamic_int8(fp32: Path, out: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    return {"file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
            "size_mb": round(out.stat().st_size / 1e6, 2), "fp32_size_mb": round(fp32.stat().st_size / 1e6, 2),
            "wall_s": round(time.perf_counter() - started, 1)}


def runtime_accuracy(run: Any, run_dir: Path) -> float:
    """Test accuracy at batch 1 with the bundle's own preprocessing (the run's tokenizer, no padding)."""
    from edgetl.data import read_split
    from edgetl.fsutil import read_json
    from edgetl.tasks.text import encode_texts

    pp = read_json(run_dir / "export" / "manifest.json")["info"]["preprocess"]
    index = read_split(run_dir / "train" / "split.json")
    correct = 0
    for text, label in index.splits["test"]:
        ids, mask = encode_texts([text], pp)
        logits = run({"input_ids": ids, "attention_mask": mask})[0]
        correct += int(np.asarray(logits).argmax()) == label
    return correct / len(index.splits["test"])


def tokenization_ms(run_dir: Path) -> dict[str, float]:
    from edgetl.data import read_split
    from edgetl.fsutil import read_json
    from edgetl.tasks.text import encode_texts

    pp = read_json(run_dir / "export" / "manifest.json")["info"]["preprocess"]
    texts = [t for t, _ in read_split(run_dir / "train" / "split.json").splits["test"]][:500]
    times = []
    for text in texts:
        t0 = time.perf_counter_ns()
        encode_texts([text], pp)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"p50_ms": round(statistics.median(times), 4), "p90_ms": round(float(np.percentile(times, 90)), 4),
            "texts": len(texts)}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    import faulthandler

    faulthandler.enable()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default=str(RESULTS / "runs" / "text_sst2"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--backbone-lr", default="6.0e-5")
    parser.add_argument("--threads", type=int, default=1, help="training threads")
    parser.add_argument("--max-steps", type=int, default=None, help="cap fine-tuning steps per epoch")
    parser.add_argument("--qat-steps", type=int, default=60, help="QAT steps (one epoch, capped)")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="export parity gate (top-1 agreement beyond near-ties) for every artifact")
    parser.add_argument("--bench-threads", type=int, default=2, help="runtime threads of the latency comparison")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--force", default=None, metavar="STAGE",
                        help="rerun this build stage and those after it (edgetl build --force)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = out.parent / "text_sst2.yaml"
    config.write_text(CONFIG.format(data=args.data, max_seq_len=args.max_seq_len, epochs=args.epochs,
                                    backbone_lr=args.backbone_lr, threads=args.threads,
                                    max_steps=args.max_steps or "null", qat_steps=args.qat_steps,
                                    min_agreement=args.min_agreement))
    build = [*EDGETL, "build", "--target", "cpu", "--data", args.data, "--backbone", "minilm_l6",
             "--config", str(config), "--out", str(out), "--no-budget-check",
             *(["--force", args.force] if args.force else [])]
    rc, build_s, log = sh(build, RESULTS / "text_sst2.build.log")
    summary: dict[str, Any] = {"command": " ".join(["edgetl", *build[3:]]), "build_rc": rc,
                               "build_s": round(build_s, 1), "config": config.read_text()}
    if rc != 0 or not (out / "bench" / "results.json").is_file():
        summary["error"] = log.strip().splitlines()[-5:]
        (RESULTS / "text_sst2.json").write_text(json.dumps(summary, indent=2) + "\n")
        raise SystemExit(f"build failed (rc {rc}); see {RESULTS / 'text_sst2.build.log'}")

    from edgetl.fsutil import read_json

    train = read_json(out / "train" / "manifest.json")["info"]
    quant = read_json(out / "quantize" / "metrics.json")
    results = read_json(out / "bench" / "results.json")
    summary["train"] = {"test_accuracy": train["eval_accuracy"], "best_val_accuracy": train["best_val_accuracy"],
                        "best_epoch": train["best_epoch"], "epochs_run": train["epochs_run"],
                        "wall_s": train["wall_time_s"], "threads": train["threads"],
                        "history": read_json(out / "train" / "metrics.json")["epochs"]}
    summary["quantize_torch_accuracy"] = quant["accuracy"]
    summary["bench_rows"] = [
        {"artifact": r["name"], "runtime": f"{r['runtime']}:{r['device']}", "status": r["status"],
         "accuracy": r.get("accuracy"), "macro_f1": r.get("macro_f1"),
         "p50_ms_64tok": (r.get("latency_ms") or {}).get("p50"), "size_mb": round((r.get("size_bytes") or 0) / 1e6, 2),
         "int8_ops": r.get("int8_ops"), "float_ops": r.get("float_ops")}
        for r in results["rows"]]

    # the bundle predicts the test split with the accuracy results.json states
    rc_p, _, plog = sh([*EDGETL, "predict", str(out / "bundle"), "--file", str(Path(args.data) / "test.tsv")],
                       RESULTS / "text_sst2.predict.log")
    line = next((ln for ln in plog.splitlines() if ln.startswith("accuracy:")), "")
    m = re.match(r"accuracy: (\d+)/(\d+) = [\d.]+% \(artifact ([\w-]+),", line)
    if m:
        artifact = m.group(3)
        reported = next((r["accuracy"] for r in results["rows"] if r["name"] == artifact
                         and r["runtime"] == ("onnxruntime" if artifact.startswith("onnx") else "openvino")), None)
        summary["predict"] = {"artifact": artifact, "correct": int(m.group(1)), "total": int(m.group(2)),
                              "accuracy": int(m.group(1)) / int(m.group(2)), "reported": reported}
    else:
        summary["predict"] = {"rc": rc_p, "error": plog.strip().splitlines()[-3:]}

    if not args.skip_probe:
        summary["linear_probe"] = linear_probe(Path(args.data), args.max_seq_len, args.threads)

    dyn_path = out / "export_dynamic_int8.onnx"
    summary["dynamic_int8"] = dynamic_int8(out / "export" / "model_fp32.onnx", dyn_path)
    runs = sessions(out / "export", args.bench_threads, dyn_path)
    summary["dynamic_int8"]["test_accuracy_ort_batch1"] = round(
        runtime_accuracy(runs["ort int8 dynamic (untuned)"], out), 4)
    summary["tokenization"] = tokenization_ms(out)
    summary["latency_threads"] = args.bench_threads
    summary["latency"] = {str(n): interleaved_p50(runs, n, args.rounds, args.iters) for n in (32, 128)}
    summary["latency_batch8"] = {str(n): interleaved_p50(runs, n, args.rounds, max(3, args.iters // 4), batch=8)
                                 for n in (32, 128)}
    (RESULTS / "text_sst2.json").write_text(json.dumps(summary, indent=2) + "\n")
    REPORTED.mkdir(parents=True, exist_ok=True)
    (REPORTED / "text_sst2.json").write_text(json.dumps(summary, indent=2) + "\n")

    t = summary["train"]
    print(f"\nSST-2, minilm_l6, max_seq_len {args.max_seq_len}: build {summary['build_s']:.0f}s "
          f"(fine-tuning {t['wall_s']:.0f}s, {t['epochs_run']} epochs, {t['threads']} thread(s))")
    print(f"fp32 test accuracy (torch, best val epoch {t['best_epoch']}): {100 * t['test_accuracy']:.2f}%"
          + (f"; frozen-encoder linear probe: {100 * summary['linear_probe']['test_accuracy']:.2f}%"
             if "linear_probe" in summary else ""))
    print(f"{'artifact':<20} {'runtime':<16} {'test acc':>9} {'macro F1':>9} {'p50 ms (64 tok)':>16} {'MB':>7}")
    for r in summary["bench_rows"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
        f1 = "-" if r["macro_f1"] is None else f"{r['macro_f1']:.4f}"
        p50 = "-" if r["p50_ms_64tok"] is None else f"{r['p50_ms_64tok']:.2f}"
        print(f"{r['artifact']:<20} {r['runtime']:<16} {acc:>9} {f1:>9} {p50:>16} {r['size_mb']:>7}")
    d = summary["dynamic_int8"]
    print(f"ORT dynamic int8: test {100 * d['test_accuracy_ort_batch1']:.2f}%, {d['fp32_size_mb']} -> {d['size_mb']} MB")
    print(f"tokenization: p50 {summary['tokenization']['p50_ms']} ms per text")
    print(f"\nint8/fp32 p50 at batch 1, {args.bench_threads} threads, {args.rounds} interleaved rounds "
          "(median [min-max] of the per-round ratios):")
    for n, rows in [*summary["latency"].items(), *((f"{k} b8", v) for k, v in summary["latency_batch8"].items())]:
        for name, v in rows.items():
            if "fp32" not in name:
                print(f"  {n:>4} tokens  {name:<20} {v['ratio_median']:.3f} [{v['ratio_min']:.3f}-{v['ratio_max']:.3f}]"
                      f"  (p50 {v['p50_ms_median']} ms)")
    if "predict" in summary and "accuracy" in summary["predict"]:
        p = summary["predict"]
        print(f"edgetl predict --file test.tsv: {p['correct']}/{p['total']} ({p['artifact']}); "
              f"results.json states {p['reported']}")


if __name__ == "__main__":
    main()
