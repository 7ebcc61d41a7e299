"""Where the quantize stage spends its time, and the stage before and after a change, side by side.

Per data set, in one run of this script:

1. a fine-tuned ``train/`` directory (fine-tuned here with the data set's recipe and timed, or reused with the wall
   time its ``metrics.json`` recorded);
2. rounds of ``edgetl.stages.quantize.quantize`` on that same model, alternating the code of two trees ("before",
   by default ``/work/main``; "after", this checkout), each in a fresh process (``PYTHONPATH`` = the tree) so a
   neighbour's load on the shared cores hits both alike. Every call of the stage's parts (torch.export, prepare,
   calibration, each QAT epoch, convert, candidate judging, saving) is timed from outside by wrapping the
   functions, with the process's CPU seconds beside the wall seconds (CPU / wall = cores in use);
3. the export stage of the same tree on each quantize output: the int8 accuracy of every artifact in ONNX Runtime
   and OpenVINO on the evaluation split (the parity pass; its agreement threshold is off here, agreement is
   recorded instead).

With ``--finetune-rounds`` every round also fine-tunes again (the after tree, a fresh process, a new directory), so
the fine-tune time the ratio divides by is a median of the same interleaved rounds.

Prints a table (data set, fine-tune s, quantize s before / after, int8 accuracy before / after in ORT and OV) and
the per-part breakdown, and writes ``benchmarks/reported/quantize_speed.json``.

    python benchmarks/quantize_speed.py                                  # digits demo and hymenoptera
    python benchmarks/quantize_speed.py --only digits --rounds 1
    python benchmarks/quantize_speed.py --rounds 3 --finetune-rounds   # fine-tune timed in the same rounds
    python benchmarks/quantize_speed.py --profile-only --tree /work/main  # the breakdown of one tree, no export
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGETL_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "quantize_speed"
REPORTED = ROOT / "benchmarks" / "reported" / "quantize_speed.json"
BEFORE_TREE = Path(os.environ.get("EDGETL_BEFORE_TREE", ROOT.parent / "main"))
# data set -> (config: a shipped config name or None for the defaults, overrides)
# The warm-up recipe, which the reported ratios were measured with (train.strategy's default then). Under today's
# default (auto: LP-FT, 8 probe epochs instead of 2 warm-up ones) fine-tuning takes longer, which would flatter a
# quantize / fine-tune ratio without making quantize any faster.
_RECIPE = {"train.strategy": "warmup_finetune"}
DATASETS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "digits": ("demo", _RECIPE),
    "digits-demo": ("demo", {}),  # `make demo` as it ships: its config and today's default recipe
    "hymenoptera": (None, {**_RECIPE, "data.path": str(SHARED / "datasets" / "hymenoptera")}),
}

# (module, attribute, label): the parts of the stage, looked up when called, so wrapping the attribute times them
WRAPPED = (
    ("edgetl.stages.quantize", "run_ptq", "ptq"),
    ("edgetl.stages.quantize", "run_qat", "qat"),
    ("edgetl.stages.quantize", "torch_accuracy", "torch int8/fp32 eval"),
    ("edgetl.stages.quantize", "_calibration_batches", "calibration images"),
    ("edgetl.stages.quantize", "_split_batches", "eval images"),
    ("edgetl.stages.quantize", "judge_candidate", "judge"),
    ("edgetl.quant.judge", "ort_eval", "ORT eval"),
    ("edgetl.quant.pt2e", "capture", "torch.export"),
    ("edgetl.quant.pt2e", "save_program", "save .pt2"),
    ("edgetl.quant.quantizer", "calibrate_qat_ranges", "QAT range init"),
    ("edgetl.export.writers", "export_onnx", "ONNX export"),
    ("edgetl.training.loop", "train_one_epoch", "QAT epoch"),
    ("torchao.quantization.pt2e.quantize_pt2e", "prepare_pt2e", "prepare"),
    ("torchao.quantization.pt2e.quantize_pt2e", "prepare_qat_pt2e", "prepare"),
    ("torchao.quantization.pt2e.quantize_pt2e", "convert_pt2e", "convert"),
)


# --------------------------------------------------------------------------------------------- in the worker
class PartTimer:
    """Inclusive wall and CPU seconds per call path ("qat/judge/convert"), summed over calls."""

    def __init__(self, progress: Path | None = None) -> None:
        import psutil

        self.stack: list[str] = []
        self.parts: dict[str, dict[str, float]] = {}
        self.process = psutil.Process()
        self.progress = progress  # rewritten after every part: a run stopped at its time limit still says where
        self.started = time.perf_counter()

    def dump(self) -> None:
        if self.progress is not None:
            self.progress.write_text(json.dumps({"elapsed_s": round(time.perf_counter() - self.started, 1),
                                                 "open": list(self.stack), "parts": self.parts}, indent=1))

    def cpu(self) -> float:
        """CPU seconds of this process and its children (DataLoader workers, the forkserver)."""
        total = sum(self.process.cpu_times()[:2])
        for child in self.process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except Exception:  # noqa: BLE001  a worker that just exited
                continue
        return total

    def wrap(self, fn: Any, label: str) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            path = "/".join([*self.stack, label])
            self.stack.append(label)
            wall, cpu = time.perf_counter(), self.cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.stack.pop()
                part = self.parts.setdefault(path, {"calls": 0, "wall_s": 0.0, "cpu_s": 0.0})
                part["calls"] += 1
                part["wall_s"] += time.perf_counter() - wall
                part["cpu_s"] += self.cpu() - cpu
                self.dump()

        return timed


def install(timer: PartTimer) -> list[str]:
    import importlib

    installed = []
    for module_name, attr, label in WRAPPED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attr):
            setattr(module, attr, timer.wrap(getattr(module, attr), label))
            installed.append(f"{module_name}.{attr}")
    return installed


def build_config(dataset: str, extra: dict[str, Any]) -> Any:
    from edgetl.config import BuildConfig, load_build_config

    name, overrides = DATASETS[dataset]
    cfg = load_build_config(name) if name else BuildConfig()
    return cfg.with_overrides({**overrides, **extra})


def worker(args: argparse.Namespace) -> None:
    """One quantize (and optionally export) in this process, with the code of ``PYTHONPATH``; writes JSON."""
    import logging

    import torch

    import edgetl

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("edgetl").setLevel(logging.INFO)
    extra = json.loads(args.overrides)
    cfg = build_config(args.dataset, extra)
    from edgetl.targets import load_target

    target = load_target(cfg.target)
    timer = PartTimer(Path(args.json).with_name("progress.json"))
    installed = install(timer)
    from edgetl.fsutil import read_json
    from edgetl.stages.quantize import quantize

    out = Path(args.out)
    threads_before = torch.get_num_threads()
    wall, cpu = time.perf_counter(), timer.cpu()
    if args.finetune:  # a fine-tune of the data set's recipe, timed as the quantize stage is
        import shutil

        from edgetl.stages.finetune import finetune

        shutil.rmtree(out / "train", ignore_errors=True)  # never a resumed or cached stage
        finetune(cfg, target, out / "train")
        Path(args.json).write_text(json.dumps({"finetune_s": round(time.perf_counter() - wall, 2),
                                               "finetune_cpu_s": round(timer.cpu() - cpu, 2),
                                               "torch_threads": threads_before}))
        return
    quantize(cfg, target, Path(args.train_dir), out / "quantize")
    row: dict[str, Any] = {
        "tree": str(Path(edgetl.__file__).resolve().parent.parent), "dataset": args.dataset,
        "quantize_s": round(time.perf_counter() - wall, 2), "quantize_cpu_s": round(timer.cpu() - cpu, 2),
        "torch_threads": threads_before, "wrapped": installed,
        "parts": {k: {"calls": v["calls"], "wall_s": round(v["wall_s"], 2), "cpu_s": round(v["cpu_s"], 2)}
                  for k, v in timer.parts.items()},
    }
    metrics = read_json(out / "quantize" / "metrics.json")
    row["torch_accuracy"] = metrics["accuracy"]
    row["eval_split"] = metrics["eval_split"]
    row["qat"] = {k: v for k, v in (metrics.get("qat") or {}).items() if k != "history"}
    row["qat_history"] = (metrics.get("qat") or {}).get("history")
    row["stage_timings"] = metrics.get("timings")
    if args.export:
        from edgetl.stages.export import export

        start = time.perf_counter()
        result = export(cfg.with_overrides({"export.min_top1_agreement": 0.0, "export.max_logit_diff_int8": 1e9}), target, Path(args.train_dir),
                        out / "quantize", out / "export")
        row["export_s"] = round(time.perf_counter() - start, 2)
        row["artifacts"] = {a.name: {"runtime": a.parity["runtime"], "accuracy": a.parity["accuracy"],
                                     "n": a.parity["n"], "top1_agreement": a.parity["top1_agreement"]}
                            for a in result.artifacts}
    Path(args.json).write_text(json.dumps(row, indent=2))


def judge_probe(args: argparse.Namespace) -> None:
    """The cost of judging one QAT candidate each way, on the range-initialised QAT model of ``--train-dir``."""
    import copy

    import torch
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from edgetl.quant.judge import ort_eval
    from edgetl.quant.pt2e import capture, match_qat_batchnorm_eps
    from edgetl.quant.quantizer import calibrate_qat_ranges
    from edgetl.stages.quantize import (
        _calibration_batches,
        _quantizer,
        _split_batches,
        read_float_model,
        torch_accuracy,
    )
    from edgetl.targets import load_target

    cfg = build_config(args.dataset, json.loads(args.overrides))
    inputs = read_float_model(Path(args.train_dir))
    io = inputs.artifact.card.io
    model = inputs.artifact.load()
    example = inputs.task.example_inputs(io, 2)
    val = _split_batches(inputs, "val", cfg.train.batch_size)
    row: dict[str, Any] = {"dataset": args.dataset, "val_images": sum(len(b[1]) for b in val),
                           "torch_threads": torch.get_num_threads()}

    def timed(name: str, fn: Any) -> Any:
        start = time.perf_counter()
        value = fn()
        row[f"{name}_s"] = round(time.perf_counter() - start, 2)
        return value

    row["fp32_acc"] = timed("fp32_eval", lambda: torch_accuracy(model, val))
    match_qat_batchnorm_eps(model)
    prepared = timed("prepare_qat", lambda: prepare_qat_pt2e(capture(model, example, stage="probe", what="m",
                                                                     io=io).module(), _quantizer(cfg, qat=True)))
    move_exported_model_to_eval(prepared)
    calibration = _calibration_batches(cfg, inputs)
    timed("range_init", lambda: calibrate_qat_ranges(prepared, [tuple(b.values()) for b in calibration]))
    row["fake_quant_acc"] = timed("fake_quant_eval", lambda: torch_accuracy(prepared, val))

    def convert() -> Any:
        candidate = copy.deepcopy(prepared)
        candidate.apply(disable_observer)
        move_exported_model_to_eval(candidate)
        return convert_pt2e(candidate)

    converted = timed("copy_convert", convert)
    row["torch_ref_acc"] = timed("torch_ref_eval", lambda: torch_accuracy(converted, val))
    opset = load_target(cfg.target).export.opset
    row["ort_acc"] = timed("ort_export_eval", lambda: ort_eval(converted, example, io, val, opset=opset)[1])
    Path(args.json).write_text(json.dumps(row, indent=2))


# --------------------------------------------------------------------------------------------- the driver
def finetuned(dataset: str, work: Path, retrain: bool) -> tuple[Path, float | None, str]:
    """The fine-tuned train dir of ``dataset`` and the wall seconds this script timed its fine-tuning with the data
    set's recipe (None: a train dir made otherwise, whose own recorded time is in the origin text)."""
    from edgetl.fsutil import read_json

    train_dir = work / dataset / "train"
    if (train_dir / "manifest.json").is_file() and not retrain:
        timing_file = work / dataset / "finetune_timing.json"
        if timing_file.is_file():
            return train_dir, float(read_json(timing_file)["finetune_s"]), "fine-tuned by an earlier run of this script"
        recorded = read_json(train_dir / "metrics.json").get("wall_time_s")
        config = read_json(train_dir / "manifest.json").get("config", {}).get("train", {})
        return train_dir, None, (f"a train dir not made by this script (train stage {recorded} s, epochs "
                                 f"{config.get('head_epochs')}+{config.get('epochs')}, max steps "
                                 f"{config.get('max_steps_per_epoch')}): not the data set's recipe")
    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    cfg = build_config(dataset, {})
    start = time.perf_counter()
    finetune(cfg, load_target(cfg.target), train_dir)
    seconds = round(time.perf_counter() - start, 2)
    (work / dataset / "finetune_timing.json").write_text(json.dumps({"finetune_s": seconds}))
    return train_dir, seconds, "fine-tuned by this run"


def run_worker(tree: Path, dataset: str, train_dir: Path, out: Path, overrides: dict[str, Any],
               export: bool, log: Path, probe: bool = False, finetune: bool = False) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENVINO_TELEMETRY": "0", "NNCF_CI": "1"}
    out, train_dir = out.resolve(), train_dir.resolve()  # the worker runs in the tree's directory
    out.mkdir(parents=True, exist_ok=True)
    result = out / "row.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--dataset", dataset,
               "--train-dir", str(train_dir), "--out", str(out), "--json", str(result),
               "--overrides", json.dumps(overrides)] + (["--export"] if export else []) + (["--probe"] if probe else []) \
        + (["--finetune"] if finetune else [])
    with open(log, "a") as fh:
        fh.write(f"\n# {tree}: {' '.join(command)}\n")
        fh.flush()
        proc = subprocess.run(command, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=str(tree))
    if proc.returncode != 0:
        return attach_progress({"status": "failed", "tree": str(tree), "returncode": proc.returncode,
                                "log": str(log), "out": str(out)})
    return {"status": "ok", **json.loads(result.read_text())}


def attach_progress(run: dict[str, Any]) -> dict[str, Any]:
    """A run that did not finish (stopped at a time limit): the parts it had finished, from its progress.json."""
    progress = Path(run["out"]) / "progress.json"
    if run["status"] != "ok" and progress.is_file():
        done = json.loads(progress.read_text())
        run["unfinished"] = {"elapsed_s": done["elapsed_s"], "open_parts": done["open"],
                             "parts": {k: {"calls": v["calls"], "wall_s": round(v["wall_s"], 2),
                                           "cpu_s": round(v["cpu_s"], 2)} for k, v in done["parts"].items()}}
    return run


def finalize(args: argparse.Namespace) -> None:
    """Rewrite the JSON of an earlier run whose workers were stopped: progress of unfinished runs, table."""
    path = args.work / "quantize_speed.json"
    summary = json.loads(path.read_text())
    for row in summary["rows"]:
        for name, side in row["sides"].items():
            for run in side["runs"]:
                run.setdefault("out", str(args.work / row["dataset"] / f"{name}-{run['round']}"))
                attach_progress(run)
    if args.note:
        summary["run_note"] = args.note
    probe = args.work / "judge_probe.json"
    if probe.is_file():
        summary["judge_probe"] = {
            "what": "one QAT candidate of the range-initialised QAT model, judged each way on val, in one process "
                    "(seconds on the shared machine: compare within a row)",
            "rows": [r["judge_probe"] for r in json.loads(probe.read_text())["rows"]]}
    path.write_text(json.dumps(summary, indent=2))
    REPORTED.write_text(json.dumps(summary, indent=2))
    print_table(summary["rows"])


def summarise(runs: list[dict[str, Any]], key: str = "quantize_s") -> dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {"status": "failed"}
    walls = [r[key] for r in ok]
    return {f"{key}_median": round(statistics.median(walls), 1), f"{key}_min": min(walls),
            f"{key}_max": max(walls), "rounds": len(ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(DATASETS))
    parser.add_argument("--rounds", type=int, default=2, help="interleaved before/after rounds per data set")
    parser.add_argument("--before", type=Path, default=BEFORE_TREE, help="the tree of the 'before' code")
    parser.add_argument("--after", type=Path, default=ROOT, help="the tree of the 'after' code")
    parser.add_argument("--finalize", action="store_true",
                        help="rewrite --work's JSON after stopping its workers: attach what unfinished runs measured")
    parser.add_argument("--note", default=None, help="with --finalize: how this run was made, for the JSON")
    parser.add_argument("--parallel", action="store_true",
                        help="run the before and after side of a round at the same time (same ambient load)")
    parser.add_argument("--retrain", action="store_true", help="fine-tune again even when a train dir exists")
    parser.add_argument("--no-export", dest="export_accuracy", action="store_false",
                        help="skip the ORT/OpenVINO accuracy pass (timings only)")
    parser.add_argument("--profile-only", action="store_true", help="one quantize of --tree per data set")
    parser.add_argument("--judge-probe", action="store_true",
                        help="only the cost of judging one QAT candidate each way (torch reference ops, ONNX Runtime)")
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument("--work", type=Path, default=RESULTS, help="where train dirs and runs go")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both sides (YAML value), e.g. quantize.qat_epochs=1")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--train-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--finetune", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--finetune-rounds", action="store_true",
                        help="also fine-tune once per round (the after tree, a fresh process), interleaved with the "
                             "quantize rounds, so the quantize / fine-tune ratio is measured side by side")
    args = parser.parse_args()
    if args.finalize:
        finalize(args)
        return
    if args.worker:
        judge_probe(args) if args.probe else worker(args)
        return
    import yaml

    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.only or list(DATASETS):
        train_dir, finetune_s, origin = finetuned(dataset, work, args.retrain)
        print(f"{dataset}: fine-tuning {'-' if finetune_s is None else f'{finetune_s:.1f} s'} ({origin})", flush=True)
        if args.judge_probe:
            probe = run_worker(args.tree, dataset, train_dir, work / dataset / "probe", overrides, False,
                               work / f"worker-{dataset}-probe.log", probe=True)
            print(json.dumps(probe, indent=1), flush=True)
            rows.append({"dataset": dataset, "judge_probe": probe})
            continue
        sides = {"profile": args.tree} if args.profile_only else {"before": args.before, "after": args.after}
        if args.finetune_rounds and not args.profile_only:
            sides["finetune"] = args.after
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        rounds = 1 if args.profile_only else args.rounds
        for i in range(rounds):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))  # A B, B A, ...: neither side always first
            export = args.export_accuracy and not args.profile_only and i == 0  # accuracy: deterministic, once
            jobs = [(side, functools.partial(run_worker, sides[side], dataset, train_dir, work / dataset / f"{side}-{i}",
                                             overrides, export and side != "finetune",
                                             work / f"worker-{dataset}-{side}-{i}.log", finetune=side == "finetune"))
                    for side in order]
            if args.parallel:  # both sides at the same time: the same neighbours' load on both
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(len(jobs)) as pool:
                    done = list(zip([side for side, _ in jobs], pool.map(lambda job: job[1](), jobs), strict=True))
            else:
                done = [(side, job()) for side, job in jobs]
            for side, run in done:
                run["round"], run["parallel"] = i, args.parallel
                runs[side].append(run)
                print(f"  round {i} {side}: {run.get('quantize_s', run.get('finetune_s', run['status']))} s",
                      flush=True)
                if side != "finetune":
                    print_parts(run)
        rows.append({"dataset": dataset, "finetune_s": finetune_s, "finetune_origin": origin,
                     "train_dir": str(train_dir), "overrides": overrides,
                     "sides": {side: {"tree": str(tree), **summarise(runs[side], "finetune_s" if side == "finetune"
                                                                     else "quantize_s"), "runs": runs[side]}
                               for side, tree in sides.items()}})
        write(rows, args)
    if not (args.profile_only or args.judge_probe):
        print_table(rows)
    else:
        write(rows, args)


def print_parts(run: dict[str, Any]) -> None:
    if run["status"] != "ok":
        print(f"    failed (exit {run['returncode']}): see {run['log']}")
        return
    for path, part in sorted(run["parts"].items(), key=lambda kv: -kv[1]["wall_s"]):
        if part["wall_s"] >= 0.5:
            print(f"    {path:<48} {part['calls']:>3}x {part['wall_s']:>8.1f} s  "
                  f"cpu/wall {part['cpu_s'] / max(part['wall_s'], 1e-9):.2f}")


def write(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import torch

    from edgetl.manifest import library_versions

    summary = {
        "benchmark": "quantize_speed",
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": library_versions(),
        "note": "2 CPU cores shared with other jobs: wall times are inflated; before/after are interleaved rounds "
                "on the same fine-tuned model in one run, so compare them as ratios",
        "rows": rows,
    }
    side = args.profile_only or args.judge_probe
    out = args.work / ("judge_probe.json" if args.judge_probe else "profile.json" if side else "quantize_speed.json")
    out.write_text(json.dumps(summary, indent=2))
    if not side:
        REPORTED.parent.mkdir(parents=True, exist_ok=True)
        REPORTED.write_text(json.dumps(merge_reported(summary), indent=2))


def merge_reported(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with the reported file's rows of the data sets this run did not measure (``--only``) kept
    after its own. Each row says when, where and by which command it was measured: the ratios inside a row are side
    by side, across rows they are not."""
    stamp = {"measured": time.strftime("%Y-%m-%d"), "command": " ".join(["python", *sys.argv]),
             "cpu": _cpu_flags()}
    rows = [{**row, **{k: v for k, v in stamp.items() if k not in row}} for row in summary["rows"]]
    mine = {row["dataset"] for row in rows}
    old = json.loads(REPORTED.read_text()).get("rows", []) if REPORTED.is_file() else []
    return {**summary, "rows": rows + [row for row in old if row.get("dataset") not in mine]}


def _cpu_flags() -> str:
    """The int8-relevant ISA of this host (the quantize stage's torch kernels and the runtimes depend on it)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return platform.processor() or platform.machine()
    return ", ".join(f for f in ("amx_int8", "avx512_vnni", "avx2") if f in flags) or platform.machine()


def _int8_acc(side: dict[str, Any], runtime: str) -> str:
    runs = [r for r in side.get("runs", []) if r["status"] == "ok" and r.get("artifacts")]
    if not runs:
        return "-"
    arts = runs[0]["artifacts"]
    ship = "qat" if f"{runtime}-int8-qat" in arts else "ptq"
    parts = [f"{k.split('-')[-1]} {100 * v['accuracy']:.2f}%" for k, v in arts.items()
             if k.startswith(f"{runtime}-int8")]
    return ", ".join(parts) + ("" if ship == "qat" else " (no qat)")


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="quantize stage: before vs after (median of interleaved rounds, min-max)")
    for col in ("data set", "finetune s", "quantize s before", "quantize s after", "ORT int8 before",
                "ORT int8 after", "OV int8 before", "OV int8 after"):
        table.add_column(col)
    for row in rows:
        b, a = row["sides"].get("before", {}), row["sides"].get("after", {})

        def wall(s: dict[str, Any]) -> str:
            if "quantize_s_median" not in s:
                stopped = [r["unfinished"] for r in s.get("runs", []) if r.get("unfinished")]
                return f">{stopped[0]['elapsed_s']:.0f} (stopped in {'/'.join(stopped[0]['open_parts'])})" \
                    if stopped else "-"
            return f"{s['quantize_s_median']:.0f} ({s['quantize_s_min']:.0f}-{s['quantize_s_max']:.0f})"

        f = row["sides"].get("finetune", {})
        tuned = (f"{f['finetune_s_median']:.0f} ({f['finetune_s_min']:.0f}-{f['finetune_s_max']:.0f})"
                 if "finetune_s_median" in f else "-" if row["finetune_s"] is None else f"{row['finetune_s']:.0f}")
        ratio = (f" = {a['quantize_s_median'] / f['finetune_s_median']:.2f}x" if "finetune_s_median" in f
                 and "quantize_s_median" in a else "")
        table.add_row(row["dataset"], tuned, wall(b), wall(a) + ratio,
                      _int8_acc(b, "onnx"), _int8_acc(a, "onnx"), _int8_acc(b, "openvino"), _int8_acc(a, "openvino"))
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
