"""Device measurement through loopback SSH on real data: the build's device rows against its host rows.

``edgetl build --target raspberry-pi-5 --device ssh://edgetl-device@127.0.0.1:PORT/WORKDIR`` on the throwaway sshd
of ``tests/execution/conftest.py`` (``loopback_server``: 127.0.0.1, a non-root device user whose python has NumPy
and ONNX Runtime but no torch), then ``rounds - 1`` more ``edgetl bench --device`` runs of the same run directory.
Each bench measures the device rows first, then the host rows, so rounds interleave device and host. Through
loopback the "device" is this host: each device row and the host row of the same artifact (same runtime, threads
and timing rules) should agree within run-to-run noise; the table gives the device/host p50 ratio (median and
spread over rounds) and both accuracies.

It also measures the bundle's uint8-input variant (raw pixels in, preprocessing in the graph) on the device and
on the host beside the float-input model, fed the uint8 crops and the normal preprocessed images respectively
(interleaved rounds, predictions compared), and the roofline estimate/measured ratio of every artifact on this
host (host peaks measured by ``edgetl.estimate.measure_host_peaks`` in each round).

    PYTHONPATH=$PWD python benchmarks/device_loopback.py --config CONFIG --out runs/device-hym [--rounds 3]

Root only (it starts sshd and logs in as a separate user). Writes benchmarks/reported/device_loopback_<data>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from click.testing import CliRunner

from edgetl.cli import cli
from edgetl.fsutil import write_json
from tests.execution.conftest import Loopback, loopback_server

HERE = Path(__file__).resolve().parent
REPORTED = HERE / "reported"


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def pairs(results: Path) -> dict[str, dict[str, Any]]:
    """Per artifact: the device row and the host row of the same runtime and precision (both ok)."""
    rows = json.loads(results.read_text())["rows"]
    out = {}
    for d in rows:
        if d["measured_on"] != "device" or d["status"] != "ok":
            continue
        h = next((r for r in rows if r["measured_on"] == "host" and r["status"] == "ok" and r["name"] == d["name"]
                  and r["runtime"] == d["runtime"] and r["precision"] == d["precision"]), None)
        if h is not None:
            out[d["name"]] = {"device": d, "host": h}
    return out


def cli_run(args: list[str]) -> Any:
    print("$ edgetl " + " ".join(args), flush=True)
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def uint8_round(box: Loopback, bundle: Path, eval_inputs: dict[str, np.ndarray], threads: int,
                timing: dict[str, Any]) -> dict[str, Any]:
    """One round: the float-input model and its uint8-input variant on the device, then both on the host."""
    from edgetl.bench.measure import TimingPlan, latency_stats, timed_runs
    from edgetl.execution.ssh import measure_on_device
    from edgetl.export.parity import run_in_chunks
    from edgetl.runtimes import RUNTIMES

    manifest = json.loads((bundle / "manifest.json").read_text())
    variant = manifest["uint8_input"][0]
    models = {"float": bundle / variant["variant_of"], "uint8": bundle / variant["path"]}
    precision = next(f["precision"] for f in manifest["files"] if f["path"] == variant["path"])
    device = box.device(command_timeout_s=900)
    out: dict[str, Any] = {}
    for kind, path in models.items():
        row = {"model": path.name, "runtime": "onnxruntime", "device": "cpu", "precision": precision,
               "threads": threads, **timing}
        _, (result,) = measure_on_device(device, [row], [path], {"input": eval_inputs[kind]}, eval_inputs["labels"])
        out[f"device_{kind}"] = {"p50_ms": result["latency_ms"]["p50"], "accuracy": result["accuracy"],
                                 "predictions": result["predictions"]}
    for kind, path in models.items():
        session = RUNTIMES.get("onnxruntime").load(path, "cpu", precision, threads)
        try:
            x = {"input": np.ascontiguousarray(eval_inputs[kind][:1])}
            session.run(x)
            stats = latency_stats(timed_runs(lambda s=session, x=x: s.run(x), TimingPlan(**timing)))
            preds = run_in_chunks(session, {"input": eval_inputs[kind]}, 1).argmax(1)
        finally:
            session.close()
        out[f"host_{kind}"] = {"p50_ms": stats.p50, "accuracy": float(np.mean(preds == eval_inputs["labels"])),
                               "predictions": preds.tolist()}
    return out


def eval_arrays(run: Path) -> dict[str, np.ndarray]:
    """The evaluation split of the run, as the float model takes it and as uint8 crops (one decode per image)."""
    from edgetl.stages.quantize import read_float_model

    inputs = read_float_model(run / "train")
    floats, pixels, labels = [], [], []
    for (batch, lab), raw in inputs.task.eval_pixel_batches(inputs.eval_samples, inputs.preprocess, 32):
        floats.append(batch["input"])
        pixels.append(raw["input"])
        labels.append(lab)
    return {"float": np.concatenate(floats), "uint8": np.concatenate(pixels), "labels": np.concatenate(labels)}


def estimator_ratios(run: Path, rounds: list[dict[str, dict[str, Any]]], threads: int) -> dict[str, Any]:
    """Roofline estimate (this host's peaks, measured now) / measured host p50, per artifact and round."""
    from edgetl.estimate import layer_costs, measure_host_peaks, roofline
    from edgetl.stages.benchmark import ESTIMATE_BAND

    artifacts = {a["name"]: a for a in json.loads((run / "export" / "manifest.json").read_text())["info"]["artifacts"]}
    peaks = [measure_host_peaks(threads) for _ in range(len(rounds))]
    out = {}
    for name in rounds[0]:
        costs = layer_costs(run / "export" / artifacts[name]["path"], batch=1)
        ratios = [roofline(costs, p.to_device_peaks(), model=name).total_ms / r[name]["host"]["latency_ms"]["p50"]
                  for p, r in zip(peaks, rounds, strict=True) if name in r]
        lo, hi = ESTIMATE_BAND
        out[name] = {**spread(ratios), "within_band": lo <= statistics.median(ratios) <= hi,
                     "band": list(ESTIMATE_BAND)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="build config YAML (data, epochs)")
    parser.add_argument("--out", required=True, help="run directory (reused: train/quantize are cached)")
    parser.add_argument("--target", default="raspberry-pi-5")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.out)
    load_before = os.getloadavg()
    started = time.time()
    with loopback_server() as box:
        flags = ["--device", f"ssh://{box.user}@127.0.0.1:{box.port}{box.workdir}", "--device-python", box.python,
                 "--identity", str(box.key), "--ssh-config", str(box.ssh_config)]
        build = cli_run(["build", "--target", args.target, "--config", args.config, "--out", str(out), *flags])
        print(build.output)
        build_s = round(time.time() - started, 1)
        rounds = [pairs(out / "bench" / "results.json")]
        arrays = eval_arrays(out)
        first = next(iter(rounds[0].values()))["device"]
        threads = int(first["threads"])
        settings = json.loads((out / "bench" / "results.json").read_text())["settings"]
        timing = {k: settings[k] for k in ("warmup", "min_iterations", "min_time_s")}  # the build's timing rules
        uint8 = [uint8_round(box, out / "bundle", arrays, threads, timing)]
        for i in range(1, args.rounds):
            bench_dir = out / f"bench-round{i + 1}"
            done = cli_run(["bench", str(out), "--target", args.target, "--config", args.config, "--out",
                            str(bench_dir), "--no-report", *flags])
            if done.exit_code not in (0, 1):  # 1: a budget failed; the rows are still measured and written
                print(done.output)
                raise SystemExit(done.exit_code)
            rounds.append(pairs(bench_dir / "results.json"))
            uint8.append(uint8_round(box, out / "bundle", arrays, threads, timing))
    estimates = estimator_ratios(out, rounds, threads)
    load_after = os.getloadavg()

    table = []
    print(f"\n{'artifact':<16}{'runtime':<17}{'host p50':>10}{'device p50':>12}{'device/host':>13}{'spread':>14}"
          f"{'acc host':>10}{'acc device':>11}{'est/meas':>10}")
    for name, pair in rounds[0].items():
        ratio = spread([r[name]["device"]["latency_ms"]["p50"] / r[name]["host"]["latency_ms"]["p50"]
                        for r in rounds if name in r])
        host_p50 = statistics.median(r[name]["host"]["latency_ms"]["p50"] for r in rounds if name in r)
        dev_p50 = statistics.median(r[name]["device"]["latency_ms"]["p50"] for r in rounds if name in r)
        d, h = pair["device"], pair["host"]
        row = {"artifact": name, "runtime": f"{d['runtime']}:{d['device']} {d['precision']}", "threads": d["threads"],
               "host_p50_ms": host_p50, "device_p50_ms": dev_p50, "device_over_host": ratio,
               "accuracy_host": h["accuracy"], "accuracy_device": d["accuracy"],
               "same_confusion_matrix": h["confusion_matrix"] == d["confusion_matrix"],
               "estimate_over_measured_host": estimates.get(name)}
        table.append(row)
        print(f"{name:<16}{row['runtime']:<17}{host_p50:>10.3f}{dev_p50:>12.3f}{ratio['median']:>13.3f}"
              f"{ratio['min']:>7.3f}-{ratio['max']:<6.3f}{100 * h['accuracy']:>9.2f}%{100 * d['accuracy']:>10.2f}%"
              f"{estimates[name]['median']:>10.2f}")
    u_ratio = {w: spread([u[f"{w}_uint8"]["p50_ms"] / u[f"{w}_float"]["p50_ms"] for u in uint8])
               for w in ("device", "host")}
    same = all(u[f"{w}_uint8"]["predictions"] == u[f"{w}_float"]["predictions"] for u in uint8 for w in ("device", "host"))
    u0 = uint8[0]
    print(f"\nuint8-input variant ({json.loads((out / 'bundle' / 'manifest.json').read_text())['uint8_input'][0]['path']}"
          f"): same predictions as the float-input model on the device and the host in every round: {same}; "
          f"accuracy device {100 * u0['device_uint8']['accuracy']:.2f}% / float {100 * u0['device_float']['accuracy']:.2f}%; "
          f"uint8/float p50 device {u_ratio['device']['median']:.3f} ({u_ratio['device']['min']:.3f}-"
          f"{u_ratio['device']['max']:.3f}), host {u_ratio['host']['median']:.3f} ({u_ratio['host']['min']:.3f}-"
          f"{u_ratio['host']['max']:.3f})")
    budgets = json.loads((out / "budgets.json").read_text())
    for b in budgets:
        print(f"budget {b['budget']}: {b['status']} ({b.get('measured')} {b.get('unit')} at {b.get('where')})")
    data = Path(cfg.get("data", {}).get("path", "digits")).name
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": f"python benchmarks/device_loopback.py "
        f"--config {args.config} --out {args.out} --target {args.target} --rounds {args.rounds}",
        "config": cfg, "target": args.target, "build_rc": build.exit_code, "build_s": build_s,
        "load_average_1_5_15min": {"before": load_before, "after": load_after},
        "method": __doc__.strip().split("\n\n")[1].replace("\n", " "),
        "rows": table, "budgets": budgets,
        "uint8_variant": {"same_predictions_every_round": same, "uint8_over_float_p50": u_ratio,
                          "rounds": [{k: {m: v for m, v in d.items() if m != "predictions"} for k, d in u.items()}
                                     for u in uint8],
                          "bundle_entry": json.loads((out / "bundle" / "manifest.json").read_text())["uint8_input"]},
        "estimator_band_used_by_reports": estimates[next(iter(estimates))]["band"] if estimates else None,
    }
    path = write_json(REPORTED / f"device_loopback_{data}.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
