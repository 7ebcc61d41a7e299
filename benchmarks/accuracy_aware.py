"""Accuracy-aware PTQ (issue 14): the fallback, its step curve in ONNX Runtime and OpenVINO, the ranking's cost, and
NNCF's accuracy control beside it.

Usage (a run directory whose train/ holds the fp32 model, e.g. from `edgetl train -c CONFIG -o RUN`):

    python benchmarks/accuracy_aware.py --run runs/aa-digits --config benchmarks/accuracy_aware_digits.yaml \\
        --nncf /work/nncf-site --compare-exact --report

What it does, in one process and side by side:
1. The quantize and export stages as a build runs them (the config: PTQ only, ``quantize.fallback`` on) into
   RUN/quantize and RUN/export; the export's int8 proof checks each runtime against the precision plan. With
   ``--report`` also the bench stage and the report (RUN/bench, RUN/report), whose step curve is checked.
2. With ``--compare-exact``: the ranking's cost, exact (every layer on all of val) against screened (the default:
   a val subset, the best confirmed on all of val), on the same PTQ model in this process, one after the other:
   wall time, validation passes, the chosen float layers and their val accuracy.
3. The step curve on the evaluation split (test, where edgetl holds one out): every fallback step's model (0, 1,
   ... layers in float) exported to ONNX and IR; top-1 at batch 1 and batch-1 p50 in both runtimes, fp32 beside
   them, in interleaved rounds (fp32, step 0, step 1, ..., NNCF, then again); ratios are medians of per-round
   ratios with their range.
4. With ``--nncf PATH`` (NNCF installed there by ``pip install --no-deps --target PATH nncf``; a benchmark-only
   dependency): ``nncf.quantize_with_accuracy_control`` on the same fp32 ONNX and IR the export stage wrote, with
   the same calibration images, the same validation images (val) and the same max_drop, timed and measured in the
   same rounds.
Prints a table and writes the JSON (default benchmarks/reported/accuracy_aware.json).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPORTED = Path(__file__).resolve().parent / "reported"


def accuracy(session: Any, batches: list[Any]) -> float:
    """Top-1 at batch 1 (the latency rows' batch size; ONNX Runtime's int8 kernels round per batch size)."""
    correct = total = 0
    for inputs, labels in batches:
        for i in range(len(labels)):
            out = session.run({k: v[i : i + 1] for k, v in inputs.items()})
            correct += int(np.asarray(out).argmax(1)[0] == labels[i])
            total += 1
    return correct / max(1, total)


def run_nncf(nncf_path: Path, fp32_onnx: Path, fp32_ir: Path, calib: list[np.ndarray], val: list[Any],
             budget: float, work: Path, backends: tuple[str, ...] = ("openvino", "onnx")) -> dict[str, dict[str, Any]]:
    """NNCF's accuracy control on the fp32 IR (OpenVINO backend) and on the fp32 ONNX (ONNX backend)."""
    sys.path.insert(0, str(nncf_path))
    import os

    os.environ.setdefault("NNCF_CI", "1")  # no telemetry
    import nncf
    import onnx
    import onnxruntime as ort
    import openvino as ov

    def validate_ov(compiled: Any, data: Any) -> tuple[float, list[float]]:
        out = compiled.outputs[0]
        hits = [float(np.argmax(compiled(img)[out]) == label) for img, label in data]
        return float(np.mean(hits)), hits

    sessions: dict[int, Any] = {}

    def validate_onnx(model: Any, data: Any) -> tuple[float, list[float]]:
        key = id(model)
        if key not in sessions:  # NNCF asks per item too: one session per model it hands over
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            sessions.clear()
            sessions[key] = (model, ort.InferenceSession(model.SerializeToString(), options,
                                                         providers=["CPUExecutionProvider"]))
        session = sessions[key][1]
        name = session.get_inputs()[0].name
        hits = [float(np.argmax(session.run(None, {name: img})[0]) == label) for img, label in data]
        return float(np.mean(hits)), hits

    rows = {}
    for backend, model, validate in (("openvino", ov.Core().read_model(str(fp32_ir)), validate_ov),
                                     ("onnx", onnx.load(str(fp32_onnx)), validate_onnx)):
        if backend not in backends:
            continue
        if backend == "onnx":  # NNCF's ONNX engine feeds {input name: array}; OpenVINO takes the array itself
            name = model.graph.input[0].name
            calib_set = nncf.Dataset(calib, lambda img, n=name: {n: img})
            val_set = nncf.Dataset(val, lambda item, n=name: {n: item[0]})
        else:
            calib_set, val_set = nncf.Dataset(calib), nncf.Dataset(val)
        t0 = time.perf_counter()
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration_dataset=calib_set, validation_dataset=val_set,
            validation_fn=validate, max_drop=budget / 100, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(calib))
        wall = time.perf_counter() - t0
        if backend == "openvino":
            path = work / "nncf.xml"
            ov.save_model(quantized, str(path), compress_to_fp16=False)
        else:
            path = work / "nncf.onnx"
            onnx.save(quantized, str(path))
        rows[f"nncf-{backend}"] = {"path": path, "wall_time_s": round(wall, 1), "nncf_version": nncf.__version__}
    return rows


def compare_ranking(cfg: Any, budget: float, converted: Any, weights: Any, fp32_model: Any,
                    val_batches: list[Any], biases: Any = None) -> dict[str, Any]:
    """The exact and the screened ranking on the same PTQ model, one after the other in this process (a reverted
    layer takes back its bias from before bias correction, ``biases``, as in the stage)."""
    from edgetl.quant.mixed import accuracy_aware

    fb = cfg.quantize.fallback
    out = {}
    for name, rank_images in (("screened", fb.rank_images), ("exact", None)):
        t0 = time.perf_counter()
        _, chosen, rep = accuracy_aware(converted, weights, fp32_model, val_batches, budget, fb.max_float_layers,
                                        "quantize.fallback", rank_images=rank_images,
                                        confirm_layers=fb.confirm_layers, biases=biases)
        sens = rep["sensitivity"]
        out[name] = {"wall_time_s": round(time.perf_counter() - t0, 1), "ranking_s": sens["wall_time_s"],
                     "full_val_passes": sens["full_passes"], "screen_passes": sens["screen_passes"],
                     "screen_images": sens["screen_images"], "screen": sens.get("screen"),
                     "order": [r["layer"] for r in sens["layers"]][: fb.confirm_layers],
                     "status": rep["status"], "float_layers": [la.name for la in chosen],
                     "shipped_val_accuracy": rep["shipped_val_accuracy"], "proxy_spearman": sens["proxy_spearman"],
                     "steps": [(len(s["float_layers"]), s["drop_points"]) for s in rep["steps"]]}
        if name == "exact":  # does the screen's proxy order the layers as the exact accuracy gain does?
            from scipy.stats import spearmanr

            gain = {r["layer"]: r["accuracy_gain"] for r in sens["layers"]}
            out["exact"]["layers"] = sens["layers"]
            exact_top = [r["layer"] for r in sens["layers"]][: fb.max_float_layers]
            out["agreement"] = {
                "same_float_layers": out["exact"]["float_layers"] == out["screened"]["float_layers"],
                "exact_top_cap_in_screened_confirmed": sum(n in out["screened"]["order"] for n in exact_top),
                "cap": fb.max_float_layers,
                "exact_gain_of_screened_choice": [gain[n] for n in out["screened"]["float_layers"]],
                "passes_ratio": round(out["screened"]["full_val_passes"] / max(1, out["exact"]["full_val_passes"]),
                                      3),
                "wall_ratio": round(out["screened"]["ranking_s"] / max(1e-9, out["exact"]["ranking_s"]), 3),
                "spearman_exact_gain_vs_exact_mse": sens["proxy_spearman"],
                "spearman_exact_gain_vs_val_rank": None if len(gain) < 3 else round(float(spearmanr(
                    list(gain.values()), list(range(len(gain)))).statistic), 4),
            }
    return out


def check_screen(cfg: Any, report: dict[str, Any], converted: Any, weights: Any, fp32_model: Any,
                 val_batches: list[Any], sample: int, repeats: int = 2, biases: Any = None) -> dict[str, Any]:
    """The ranking's cost and a check of the screen, for less than the exact ranking costs.

    Cost: one pass over all of val and one over the screening subset, timed alternately ``repeats`` times in this
    process; the exact ranking needs 1 + layers full passes, the screened one (1 + layers) subset passes and
    (1 + confirmed) full ones. Check: the whole-val accuracy gain of ``sample`` layers the screen left unconfirmed
    (a seeded sample; exact figures): a screen that misses a sensitive layer shows one with a gain above the
    chosen layers'.
    """
    import random

    import torch

    from edgetl.quant.mixed import _screening_subset, quantized_layers, revert_layers

    sens = report["sensitivity"]
    by_name = {la.name: la for la in quantized_layers(converted)}

    def logits(model: Any, batches: list[Any]) -> list[np.ndarray]:
        with torch.inference_mode():
            return [np.asarray(model(torch.from_numpy(x["input"])), dtype=np.float64) for x, _ in batches]

    def top1(z: list[np.ndarray], batches: list[Any]) -> float:
        hits = sum(int((a.argmax(1) == np.asarray(y)).sum()) for a, (_, y) in zip(z, batches, strict=True))
        return hits / sum(len(y) for _, y in batches)

    fp32 = logits(fp32_model, val_batches)
    base = logits(converted, val_batches)
    subset, _ = _screening_subset(val_batches, base, fp32, cfg.quantize.fallback.rank_images)
    probe = by_name[sens["layers"][-1]["layer"]]  # any one layer: a pass costs the same whichever is reverted
    full_s, subset_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        logits(revert_layers(converted, weights, [probe], biases), val_batches)
        full_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        logits(revert_layers(converted, weights, [probe], biases), subset)
        subset_s.append(time.perf_counter() - t0)
    full, part = statistics.median(full_s), statistics.median(subset_s)
    layers = len(sens["layers"])
    confirmed = [r for r in sens["layers"] if r.get("accuracy_gain") is not None]
    exact_s = (1 + layers) * full
    screened_s = (1 + layers) * part + (1 + len(confirmed)) * full
    unconfirmed = [r["layer"] for r in sens["layers"] if r.get("accuracy_gain") is None]
    picked = sorted(random.Random(0).sample(unconfirmed, min(sample, len(unconfirmed))))
    base_acc = top1(base, val_batches)
    gains = {n: round(100 * (top1(logits(revert_layers(converted, weights, [by_name[n]], biases), val_batches),
                                  val_batches) - base_acc), 4) for n in picked}
    chosen = [r for r in confirmed if r["layer"] in report["float_layers"]]
    return {
        "val_images": sum(len(y) for _, y in val_batches), "screen_images": sum(len(y) for _, y in subset),
        "full_pass_s": [round(v, 2) for v in full_s], "subset_pass_s": [round(v, 2) for v in subset_s],
        "exact_ranking": {"full_passes": 1 + layers, "estimated_s": round(exact_s, 1)},
        "screened_ranking": {"full_passes": 1 + len(confirmed), "subset_passes": 1 + layers,
                             "estimated_s": round(screened_s, 1), "measured_in_stage_s": sens["wall_time_s"]},
        "cost_ratio": round(screened_s / exact_s, 3),
        "unconfirmed_sample_exact_gain": gains,
        "confirmed_gains": {r["layer"]: r["accuracy_gain"] for r in confirmed},
        "smallest_chosen_gain": min((r["accuracy_gain"] for r in chosen), default=None),
        "largest_unconfirmed_sample_gain": max(gains.values(), default=None),
    }


def main() -> None:  # noqa: PLR0915  (one linear script)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--config", required=True)
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=100, help="timed runs per row per round")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nncf", type=Path, default=None, help="a folder NNCF is installed in (pip --target)")
    ap.add_argument("--compare-exact", action="store_true", help="also run the exact ranking (slow)")
    ap.add_argument("--check-screen", type=int, default=0, metavar="N",
                    help="time one pass over val and over the screen, and the exact gain of N unconfirmed layers")
    ap.add_argument("--extra-steps", type=int, default=0, metavar="K",
                    help="also measure K steps past the fallback's stop (the next ranked layers; never shipped)")
    ap.add_argument("--nncf-backends", default="openvino,onnx", help="NNCF backends to run, comma-separated")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override (recorded in the JSON), e.g. export.min_top1_agreement=0.5")
    ap.add_argument("--reuse", action="store_true",
                    help="keep RUN/quantize, RUN/export (and RUN/report) from an earlier run of this script")
    ap.add_argument("--report", action="store_true", help="also run the bench stage and the report")
    ap.add_argument("--name", default="digits")
    ap.add_argument("--json", type=Path, default=REPORTED / "accuracy_aware.json")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")  # the fallback's progress lines
    for noisy in ("onnx_ir", "onnxscript", "nncf"):  # one line per initializer / node at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    from edgetl.config import load_build_config
    from edgetl.export.writers import export_onnx, export_openvino
    from edgetl.quant.mixed import quantized_layers, revert_layers
    from edgetl.runtimes import RUNTIMES
    from edgetl.stages.export import export
    from edgetl.stages.quantize import (
        _calibration_batches,
        _split_batches,
        quantize,
        read_float_model,
        run_ptq,
    )
    from edgetl.targets import load_target

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = load_build_config(args.config).with_overrides({"out": str(args.run), **overrides})
    if cfg.quantize.qat or not cfg.quantize.fallback.enabled:
        raise SystemExit(f"{args.config}: set quantize.qat false and quantize.fallback.enabled true")
    target = load_target(args.target)
    budget = float(target.budgets.max_accuracy_drop or 0.0)
    train, quant, exp = args.run / "train", args.run / "quantize", args.run / "export"
    reuse = args.reuse and (quant / "metrics.json").is_file()  # quantize made by an earlier run of this script
    t0 = time.perf_counter()
    if not reuse:
        quantize(cfg, target, train, quant)
    quantize_s = time.perf_counter() - t0
    metrics = json.loads((quant / "metrics.json").read_text())
    report = metrics["fallback"]["ptq"]
    t0 = time.perf_counter()
    if not (reuse and (exp / "parity.json").is_file()):
        export(cfg, target, train, quant, exp)
    export_s = time.perf_counter() - t0
    parity = json.loads((exp / "parity.json").read_text())
    print(f"edgetl fallback: {report['message']} (quantize {quantize_s:.0f} s, export {export_s:.0f} s)")
    rendered: dict[str, Any] = {}
    if args.report:
        from edgetl.report.render import write_report
        from edgetl.stages.benchmark import benchmark

        t0 = time.perf_counter()
        if not (reuse and (args.run / "bench" / "results.json").is_file()):
            benchmark(cfg, target, args.run, args.run / "bench")
        md, page = write_report(args.run / "bench" / "results.json", args.run / "report", run_dir=args.run)
        html_text, md_text = page.read_text(), md.read_text()
        rendered = {"bench_and_report_s": round(time.perf_counter() - t0, 1),
                    "html_has_step_curve": "Accuracy fallback: step curve" in html_text,
                    "markdown_has_step_table": "Accuracy fallback (ptq)" in md_text,
                    "markdown_fallback": [ln for ln in md_text.splitlines() if ln.startswith("### Accuracy fallback")]}
        print(f"report: {rendered}")

    torch.set_num_threads(args.threads)
    inputs = read_float_model(train)
    card = inputs.artifact.card
    fp32_model = inputs.artifact.load()
    example = inputs.task.example_inputs(card.io, 2)
    eval_batches = _split_batches(inputs, inputs.index.eval_split, 32)
    val_batches = _split_batches(inputs, "val", cfg.train.batch_size)
    need_ptq = args.compare_exact or args.check_screen or len(report["steps"]) > 1
    ranking: dict[str, Any] = {}
    models: dict[str, dict[str, Path]] = {
        "fp32": {"onnx": exp / "model_fp32.onnx", "openvino": exp / "openvino" / "model_fp32.xml"},
        # the export stage's int8 model is the shipped one (the fallback's chosen step)
        "ptq (shipped)": {"onnx": exp / "model_int8_ptq.onnx", "openvino": exp / "openvino" / "model_int8_ptq.xml"}}
    work = Path(tempfile.mkdtemp(prefix="edgetl-aa-"))
    if need_ptq:  # PTQ is deterministic (same calibration sample): the stage's own model, made again
        converted, _, ptq_report = run_ptq(cfg, fp32_model, example, _calibration_batches(cfg, inputs), card.io)
        weights = ptq_report.pop("_float_weights")
        biases = ptq_report.pop("_float_biases", None)  # a reverted layer's bias before bias correction
        if args.compare_exact and report["sensitivity"].get("method") != "not run":
            ranking = compare_ranking(cfg, budget, converted, weights, fp32_model, val_batches, biases)
            print(f"ranking: {json.dumps(ranking.get('agreement'))}")
        if args.check_screen and report["sensitivity"].get("method") == "screened":
            ranking["screen_check"] = check_screen(cfg, report, converted, weights, fp32_model, val_batches,
                                                   args.check_screen, biases=biases)
            print(f"screen check: {json.dumps(ranking['screen_check'])}")
        by_name = {la.name: la for la in quantized_layers(converted)}
        opset = cfg.export.opset or target.export.opset
        plans = [step["float_layers"] for step in report["steps"][1:]]
        ranked = [r["layer"] for r in report["sensitivity"]["layers"]]
        if plans:  # past the stop: what reverting the next ranked layers would give (not chosen by the fallback)
            plans += [ranked[: len(plans[-1]) + j] for j in range(1, args.extra_steps + 1)
                      if len(plans[-1]) + j <= len(ranked)]
        if plans:
            plans.insert(0, [])  # step 0: all int8
        for k, float_layers in enumerate(plans):
            model = revert_layers(converted, weights, [by_name[n] for n in float_layers], biases)
            path = work / f"step{k}.onnx"
            export_onnx(model, example, path, opset=opset, dynamic=True, metadata={}, what=f"step {k}", io=card.io)
            export_openvino(path, work / f"step{k}.xml", {})
            models[f"step{k}"] = {"onnx": path, "openvino": work / f"step{k}.xml"}

    nncf_rows: dict[str, dict[str, Any]] = {}
    if args.nncf is not None:
        samples = list(inputs.index.splits["train"])
        import random

        random.Random(cfg.quantize.seed).shuffle(samples)  # the same calibration sample as edgetl's PTQ
        calib = [x["input"][i : i + 1] for x, _ in inputs.task.eval_batches(
            samples[: cfg.quantize.calibration_images], inputs.preprocess, 32) for i in range(len(x["input"]))]
        val = [(x["input"][i : i + 1], int(y[i])) for x, y in val_batches for i in range(len(y))]
        nncf_rows = run_nncf(args.nncf, models["fp32"]["onnx"], models["fp32"]["openvino"], calib, val, budget, work,
                             tuple(args.nncf_backends.split(",")))
        for name, row in nncf_rows.items():
            models[name] = {"openvino" if name.endswith("openvino") else "onnx": row.pop("path")}
        print(f"nncf: {nncf_rows}")

    # ---- accuracy and interleaved latency
    rows: dict[str, dict[str, Any]] = {}
    sessions: dict[tuple[str, str], Any] = {}
    for name, files in models.items():
        for fmt, path in files.items():
            precision = "fp32" if name == "fp32" else "int8"
            runtime, device = ("onnxruntime", "cpu") if fmt == "onnx" else ("openvino", "CPU")
            session = RUNTIMES.get(runtime).load(path, device, precision, args.threads)
            sessions[(name, fmt)] = session
            row = rows.setdefault(name, {})
            row[f"{fmt}_accuracy"] = accuracy(session, eval_batches)
            row[f"{fmt}_val_accuracy"] = accuracy(session, val_batches)
            counts = session.op_counts()
            if counts is not None:
                row[f"{fmt}_float_convs"] = counts.float["conv"]
                row[f"{fmt}_int8_convs"] = counts.int8["conv"]
                row[f"{fmt}_float_matmuls"] = counts.float.get("matmul", 0)
    sample = {"input": next(iter(eval_batches))[0]["input"][:1]}
    from edgetl.bench.measure import TimingPlan, timed_rounds

    keys = list(sessions)
    plan = TimingPlan(warmup=20, min_iterations=args.iterations * args.rounds, min_time_s=0.0, rounds=args.rounds)
    samples, failures = timed_rounds([lambda s=sessions[k]: s.run(sample) for k in keys], plan)
    if failures:
        raise next(iter(failures.values()))
    timings = {k: [statistics.median(r) / 1e6 for r in s] for k, s in zip(keys, samples, strict=True)}
    for (name, fmt), values in timings.items():
        ref = timings[("fp32", fmt)]
        ratios = [v / r for v, r in zip(values, ref, strict=True)]
        rows[name][f"{fmt}_p50_ms"] = round(statistics.median(values), 4)
        rows[name][f"{fmt}_p50_ms_rounds"] = [round(v, 4) for v in values]
        rows[name][f"{fmt}_p50_vs_fp32"] = round(statistics.median(ratios), 3)
        rows[name][f"{fmt}_p50_vs_fp32_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    rows["ptq (shipped)"]["float_layers"] = report["shipped_float_layers"]
    for k, step in enumerate(report["steps"]):
        name = f"step{k}" if len(report["steps"]) > 1 else "ptq (shipped)"
        rows[name]["float_layers"] = step["float_layers"]
        rows[name]["torch_val_accuracy"] = step["accuracy"]
        rows[name]["stage_latency"] = step.get("latency")
        rows[name]["shipped"] = step["float_layers"] == report["shipped_float_layers"]
    for name, row in rows.items():
        if name.startswith("step") and "float_layers" not in row:
            k = int(name[4:])
            row["float_layers"] = plans[k]
            row["past_the_stop"] = True  # measured here only: the fallback stopped before this step
    for name, row in nncf_rows.items():
        rows[name].update(row)
    edgetl_ptq = metrics["timings"]["ptq"]
    result = {
        "command": command, "config_overrides": overrides, "name": args.name, "config": args.config, "target": args.target,
        "budget_points": budget, "threads": args.threads, "rounds": args.rounds, "iterations": args.iterations,
        "eval_split": inputs.index.eval_split, "eval_images": sum(len(y) for _, y in eval_batches),
        "val_images": sum(len(y) for _, y in val_batches),
        "fallback": {k: report[k] for k in ("status", "message", "float_layers", "layers", "convs", "steps",
                                            "max_latency_increase")},
        "sensitivity": report["sensitivity"], "quantize_wall_s": None if reuse else round(quantize_s, 1), "reused_stages": reuse,
        "edgetl_ptq_with_fallback_s": edgetl_ptq.get("total_s"), "edgetl_ptq_timings": edgetl_ptq,
        "export_wall_s": round(export_s, 1),
        "torch_accuracy": metrics["accuracy"],
        "card_metrics": json.loads((quant / "manifest.json").read_text())["info"]["models"][0]["metrics"],
        "export_plan_check": {k: v.get("precision_plan", {}).get("summary") for k, v in parity.items()
                              if "int8" in k},
        "export_accuracy": {k: v["accuracy"] for k, v in parity.items()},
        "report": rendered, "ranking_cost": ranking, "rows": rows,
        "versions": {m: __import__(m).__version__ for m in ("torch", "torchao", "onnxruntime", "openvino")},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    fp32 = rows["fp32"]
    print(f"budget {budget:g} points; eval split {result['eval_split']} ({result['eval_images']} images); "
          f"{args.rounds} interleaved rounds, {args.threads} thread(s)")
    print(f"{'model':15} {'float convs':>11} {'ORT acc':>8} {'drop':>6} {'OV acc':>8} {'drop':>6} "
          f"{'ORT p50/fp32':>17} {'OV p50/fp32':>17} {'wall s':>7}")
    for name, row in rows.items():
        def cell(fmt: str, row: dict[str, Any] = row) -> str:
            if f"{fmt}_p50_vs_fp32" not in row:
                return "-"
            lo, hi = row[f"{fmt}_p50_vs_fp32_range"]
            return f"{row[f'{fmt}_p50_vs_fp32']:.2f} [{lo:.2f}-{hi:.2f}]"

        def acc(fmt: str, row: dict[str, Any] = row) -> tuple[str, str]:
            if f"{fmt}_accuracy" not in row:
                return "-", "-"
            return (f"{100 * row[f'{fmt}_accuracy']:.2f}",
                    f"{100 * (fp32[f'{fmt}_accuracy'] - row[f'{fmt}_accuracy']):.2f}")

        (oa, od), (va, vd) = acc("onnx"), acc("openvino")
        convs = row.get("openvino_float_convs", row.get("onnx_float_convs", ""))
        wall = row.get("wall_time_s", "")
        print(f"{name:15} {convs!s:>11} {oa:>8} {od:>6} {va:>8} {vd:>6} {cell('onnx'):>17} {cell('openvino'):>17} "
              f"{wall!s:>7}")
    print(f"edgetl PTQ + fallback wall: {edgetl_ptq.get('total_s')} s")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
