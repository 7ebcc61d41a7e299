"""The command line: parse, load config, call the library, map ``EdgetlError`` to a message and an exit code.

Exit codes: 0 ok, 1 a gate or budget failed, 2 usage or input error, 3 runtime/export failure, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgetl import __version__
from edgetl.errors import EXIT_INTERRUPTED, BudgetExceededError, EdgetlError


class _Group(click.Group):
    """Turns edgetl's own errors into one message and a documented exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgetlError as exc:
            if isinstance(exc, BudgetExceededError) and exc.table:
                click.echo(exc.table, err=True)
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted: finished files are kept; rerun the same command to resume", err=True)
            ctx.exit(EXIT_INTERRUPTED)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="edgetl")
def cli() -> None:
    """edgetl: take a pretrained vision backbone to an edge device.

    \b
    The pipeline, one command per stage, or all of them with `build`:
      train     fine-tune a pretrained backbone on your classes
      quantize  quantization-aware fine-tuning to int8, with a PTQ baseline
      export    ONNX (fp32, int8 QDQ) and OpenVINO IR, each checked against torch
      bench     latency and accuracy of every artifact on every runtime this host has
      report    report.md / report.html with plots from results.json
      build     all of the above for a target, cached and resumable, ending in a bundle
      predict   classify images with a bundle

    \b
    Quick start (offline, built-in digits data set):
      edgetl build --target cpu
      edgetl build --target jetson --data path/to/imagefolder --out runs/mine

    OpenVINO's and NNCF's usage telemetry is turned off unless EDGETL_ALLOW_TELEMETRY=1.
    """
    import os

    if os.environ.get("EDGETL_ALLOW_TELEMETRY") != "1":
        # openvino's converter skips telemetry when CI=true; NNCF reads NNCF_CI
        os.environ.setdefault("CI", "true")
        os.environ.setdefault("NNCF_CI", "1")


# ---------------------------------------------------------------------------------------------------- targets
@cli.group(cls=_Group)
def targets() -> None:
    """List, show and validate target profiles (edgetl/targets/*.yaml, or your own file)."""


@targets.command("list")
def targets_list() -> None:
    """A table of the shipped target profiles.

    Example: edgetl targets list
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.targets import list_targets

    table = Table(title="edgetl target profiles")
    for column in ("name", "aliases", "accelerator", "runtimes (preferred first)", "precision", "input"):
        table.add_column(column)
    for t in list_targets():
        accel = t.hardware.accelerator_name or t.hardware.accelerator
        runtimes = ", ".join(r.label for r in t.runtimes)
        table.add_row(t.name, ", ".join(t.aliases), accel, runtimes, ", ".join(t.precisions),
                      f"{t.input.image_size}px b{list(t.input.batch_sizes)}")
    Console(width=160).print(table)


@targets.command("show")
@click.argument("name")
def targets_show(name: str) -> None:
    """Print the resolved profile (aliases and `extends` applied) as YAML.

    NAME is a shipped name, an alias, or a path to your own YAML file.

    Example: edgetl targets show jetson
    """
    import yaml

    from edgetl.targets import load_target

    profile = load_target(name)
    click.echo(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))


@targets.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def targets_validate(file: str) -> None:
    """Check a profile file; exit 2 with the file, field and expectation if it is invalid.

    Example: edgetl targets validate ./my-board.yaml
    """
    from edgetl.targets import load_target

    profile = load_target(Path(file) if Path(file).suffix else f"./{file}")
    click.echo(f"ok: {file} is a valid target profile ({profile.name})")


@cli.command("backbones")
def backbones_cmd() -> None:
    """List the registered backbones with their input size and normalisation.

    Example: edgetl backbones
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.backbones import BACKBONES

    table = Table(title="edgetl backbones")
    for column in ("name", "aliases", "input", "mean / std", "description"):
        table.add_column(column)
    for name in BACKBONES.names():
        spec = BACKBONES.get(name)
        table.add_row(name, ", ".join(BACKBONES.aliases_of(name)), f"{spec.input_size}px {spec.interpolation}",
                      f"{list(spec.mean)} / {list(spec.std)}", spec.description)
    Console(width=160).print(table)


# ---------------------------------------------------------------------------------------------------- build
def _setup_logging(verbose: bool = False) -> None:
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("edgetl")
    if not logger.handlers:
        handler = RichHandler(show_time=False, show_path=False, markup=False)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


@cli.command("build")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--data", "-d", default=None, help="ImageFolder root (train/CLASS/*.jpg [val/ test/]) or 'digits'.")
@click.option("--backbone", "-b", default=None, help="Backbone name (see `edgetl backbones`) [default: efficientnet_lite0].")
@click.option("--weights", default=None, help="'default' (pretrained), 'none', or a checkpoint path.")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config; flags override it.")
@click.option("--out", "-o", default=None, help="Run directory [default: runs/default].")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs after the head warm-up.")
@click.option("--image-size", type=int, default=None, help="Input size (default: the target's).")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Rerun a stage (and those after it) even if cached: train, quantize, export, bench, report, bundle.")
@click.option("--no-budget-check", is_flag=True, help="Report budget misses without failing the build.")
@click.option("--verbose", "-v", is_flag=True)
def build_cmd(target: str | None, data: str | None, backbone: str | None, weights: str | None,
              config_file: str | None, out: str | None, epochs: int | None, image_size: int | None,
              force: tuple[str, ...], no_budget_check: bool, verbose: bool) -> None:
    """Run the whole pipeline for a target: fine-tune -> quantize -> export -> bench -> report -> bundle.

    \b
    Every stage is cached by the hash of its inputs: a rerun with nothing changed reuses everything; changing a
    setting reruns that stage and the ones after it; an interrupted build resumes. Precision, formats, input
    size, batch sizes and runtimes come from the target profile. Exit 1 when a budget of the target is missed.

    \b
    Examples:
      edgetl build --target cpu                      # built-in digits data set, offline
      edgetl build --target jetson --data ../shared/datasets/hymenoptera --out runs/hymenoptera
      edgetl build --config my-build.yaml --force bench
    """
    from edgetl.config import load_build_config
    from edgetl.pipeline import build
    from edgetl.targets import load_target

    _setup_logging(verbose)
    cfg = load_build_config(config_file).with_overrides({
        "target": target, "data.path": data, "train.backbone": backbone, "train.weights": weights,
        "out": out, "train.epochs": epochs, "train.image_size": image_size,
        "budget_check": False if no_budget_check else None,
    })
    profile = load_target(cfg.target)
    click.echo(f"edgetl build: target {profile.name}, data {cfg.data.path}, backbone {cfg.train.backbone}, "
               f"out {cfg.out}")

    def on_stage(outcome) -> None:  # type: ignore[no-untyped-def]
        if outcome.status == "reused":
            click.echo(f"  [{outcome.name}] reused (inputs unchanged)")
        elif outcome.status == "skipped":
            click.echo(f"  [{outcome.name}] skipped: {outcome.reason}")
        else:
            extra = f", {outcome.reason}" if outcome.reason else ""
            click.echo(f"  [{outcome.name}] done in {outcome.seconds:.1f}s{extra}")

    try:
        result = build(cfg, profile, force=force, on_stage=on_stage)
    except BudgetExceededError:
        _print_results(Path(cfg.out))
        raise
    _print_results(result.out)
    from edgetl.bench.budgets import budget_table

    click.echo(budget_table(result.budget_rows))
    click.echo(f"\nreport: {result.out / 'report' / 'report.html'}")
    click.echo(f"bundle: {result.bundle_dir} (+ {result.out / 'bundle.tar.gz'})")


def _print_results(out: Path) -> None:
    from edgetl.fsutil import read_json

    path = out / "bench" / "results.json"
    if not path.is_file():
        return
    from rich.console import Console
    from rich.table import Table

    results = read_json(path)
    table = Table(title=f"results: {results.get('backbone')} on {results.get('dataset')} "
                        f"({results.get('eval_split')} split), target {results.get('target')}")
    for col in ("artifact", "runtime", "precision", "status", "accuracy", "p50 ms", "p90 ms", "size MB"):
        table.add_column(col)
    for r in results.get("rows", []):
        lat = r.get("latency_ms") or {}
        acc = r.get("accuracy")
        runtime = f"{r.get('runtime')}:{r.get('device')}" + (" (proxy)" if r.get("proxy") else "")
        table.add_row(
            str(r.get("name")), runtime, str(r.get("precision")),
            str(r.get("status")) if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason', '')}"[:60],
            "-" if acc is None else f"{acc * 100:.2f}%",
            "-" if lat.get("p50") is None else f"{lat['p50']:.2f}",
            "-" if lat.get("p90") is None else f"{lat['p90']:.2f}",
            "-" if not r.get("size_bytes") else f"{r['size_bytes'] / 1e6:.2f}",
        )
    Console(width=140).print(table)


# ---------------------------------------------------------------------------------------------------- predict
@cli.command("predict")
@click.argument("bundle", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--top-k", "-k", default=3, show_default=True, help="Classes to show per image.")
def predict_cmd(bundle: str, images: tuple[str, ...], top_k: int) -> None:
    """Classify images with a bundle (its sha256s are checked first; a tampered bundle is refused).

    IMAGES are files or directories (searched recursively). When an image lies in a folder named after one of
    the bundle's classes (ImageFolder layout), the accuracy over those images is printed too.

    \b
    Examples:
      edgetl predict runs/default/bundle photo.jpg
      edgetl predict runs/default/bundle.tar.gz ../shared/datasets/hymenoptera/val
    """
    from edgetl.predict import open_bundle

    b = open_bundle(bundle)
    paths = b.collect([Path(p) for p in images])
    labelled = correct = 0
    for pred in b.predict(paths, top_k=top_k):
        shown = ", ".join(f"{label} {p:.3f}" for label, p in pred.top)
        click.echo(f"{pred.image}: {shown}")
        truth = b.truth(pred.image)
        if truth is not None:
            labelled += 1
            correct += pred.top[0][0] == truth
    if labelled:
        click.echo(f"accuracy: {correct}/{labelled} = {100.0 * correct / labelled:.2f}% "
                   f"(artifact {b.model_entry['artifact']}, {b.model_file.name}, bundle for {b.manifest['target']})")


# ---------------------------------------------------------------------------------------------------- train
# (stage commands are added below, one section per stage, each calling its stages/ module)


# ---------------------------------------------------------------------------------------------------- bench, report
def _parse_batch_sizes(text: str | None) -> tuple[int, ...] | None:
    from edgetl.errors import ConfigError

    if text is None:
        return None
    try:
        sizes = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as exc:
        raise ConfigError(f"--batch-sizes: expected comma-separated integers such as 1,8, got {text!r}") from exc
    if not sizes or any(b < 1 for b in sizes):
        raise ConfigError(f"--batch-sizes: expected integers >= 1, got {text!r}")
    return sizes


@cli.command("bench")
@click.argument("source", type=click.Path())
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its bench: section); flags override it.")
@click.option("--out", "-o", default=None,
              help="Output directory [default: SOURCE/bench for a run, runs/bench/NAME for a model file].")
@click.option("--data", "-d", default=None, help="ImageFolder root for accuracy (default: the run's own split).")
@click.option("--baseline", type=click.Path(), default=None,
              help="A previous results.json: exit 1 if a row got slower or less accurate than allowed.")
@click.option("--max-latency-regression", default=None, help="Allowed p50 rise over the baseline, e.g. 10% [10%].")
@click.option("--max-accuracy-drop", type=float, default=None, help="Allowed top-1 drop in points [0.5].")
@click.option("--threads", type=int, default=None, help="Threads per runtime (default: the target's, else all).")
@click.option("--batch-sizes", default=None, help="Throughput batch sizes, e.g. 1,8 (default: the target's).")
@click.option("--iterations", type=int, default=None, help="Minimum timed runs per row (default: the target's).")
@click.option("--min-time", type=float, default=None, help="Minimum seconds of timed runs per row.")
@click.option("--no-accuracy", is_flag=True, help="Latency only.")
@click.option("--no-report", is_flag=True, help="Do not write report.md / report.html.")
def bench_cmd(source: str, target: str | None, config_file: str | None, out: str | None, data: str | None,
              baseline: str | None, max_latency_regression: str | None, max_accuracy_drop: float | None,
              threads: int | None, batch_sizes: str | None, iterations: int | None, min_time: float | None,
              no_accuracy: bool, no_report: bool) -> None:
    """Latency, throughput, memory and accuracy of every artifact on every runtime of the target.

    SOURCE is a run directory (OUT/, after `edgetl export`) or one model file (.onnx, or OpenVINO .xml + .bin).
    Runtimes or devices this host lacks are listed as skipped with the reason; where the target is another
    device (a Jetson, an NPU) the host's CPU runtimes run as labelled proxies. Writes results.json, report.md and
    report.html; with --baseline, also gate.md, and exits 1 on a regression.

    \b
    Examples:
      edgetl bench runs/default --target cpu
      edgetl bench model.onnx --data ../shared/datasets/hymenoptera --threads 2 --batch-sizes 1,8
      edgetl bench runs/default --baseline main/results.json --max-latency-regression 10% --max-accuracy-drop 0.5
    """
    from rich.console import Console

    from edgetl.bench.gate import check_regressions, parse_percent
    from edgetl.bench.results import RESULTS_NAME
    from edgetl.config import load_build_config
    from edgetl.report.render import results_table, write_report
    from edgetl.stages.benchmark import benchmark
    from edgetl.targets import load_target

    cfg = load_build_config(config_file).with_overrides({
        "target": target, "bench.threads": threads, "bench.batch_sizes": _parse_batch_sizes(batch_sizes),
        "bench.min_iterations": iterations, "bench.min_time_s": min_time,
        "bench.accuracy": False if no_accuracy else None,
        "bench.max_latency_regression": None if max_latency_regression is None
        else parse_percent(max_latency_regression),
        "bench.max_accuracy_drop": max_accuracy_drop,
    })
    profile = load_target(cfg.target)
    src = Path(source)
    out_dir = Path(out) if out else (src / "bench" if src.is_dir() else Path("runs") / "bench" / src.stem)
    results = benchmark(cfg, profile, src, out_dir, data=data)
    Console(width=170).print(results_table(results))
    for note in results.notes:
        click.echo(f"note: {note}")
    click.echo(f"results: {out_dir / RESULTS_NAME}")
    if not no_report:
        md, page = write_report(out_dir / RESULTS_NAME, out_dir)
        click.echo(f"report:  {page} (+ {md.name})")
    if baseline:
        report = check_regressions(out_dir / RESULTS_NAME, Path(baseline), out_dir,
                                   max_latency_regression=cfg.bench.max_latency_regression,
                                   max_accuracy_drop=cfg.bench.max_accuracy_drop)
        click.echo(f"gate: no regression against {baseline} ({report.path})")


@cli.command("report")
@click.argument("results", type=click.Path())
@click.option("--out", "-o", default=None, help="Output directory [default: beside RESULTS].")
def report_cmd(results: str, out: str | None) -> None:
    """Write report.md and a self-contained report.html (plots inlined) from a results.json.

    Example: edgetl report runs/default/bench/results.json --out runs/default/report
    """
    from edgetl.report.render import write_report

    path = Path(results)
    out_dir = Path(out) if out else (path if path.is_dir() else path.parent)
    md, page = write_report(path, out_dir)
    click.echo(f"report: {page} (+ {md})")


@cli.command("gate")
@click.argument("results", type=click.Path())
@click.argument("baseline", type=click.Path())
@click.option("--max-latency-regression", default=None, help="Allowed p50 rise, e.g. 10% [10%].")
@click.option("--max-accuracy-drop", type=float, default=None, help="Allowed top-1 drop in points [0.5].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its bench: thresholds); flags override it.")
@click.option("--out", "-o", default=None, help="Where gate.md goes [default: beside RESULTS].")
def gate_cmd(results: str, baseline: str, max_latency_regression: str | None, max_accuracy_drop: float | None,
             config_file: str | None, out: str | None) -> None:
    """Compare two results.json files without re-measuring; exit 1 on a regression (writes gate.md).

    Example: edgetl gate runs/pr/bench/results.json baseline/results.json --max-latency-regression 10%
    """
    from edgetl.bench.gate import check_regressions, parse_percent
    from edgetl.config import load_build_config

    cfg = load_build_config(config_file).with_overrides({
        "bench.max_latency_regression": None if max_latency_regression is None
        else parse_percent(max_latency_regression),
        "bench.max_accuracy_drop": max_accuracy_drop,
    })
    path = Path(results)
    out_dir = Path(out) if out else (path if path.is_dir() else path.parent)
    report = check_regressions(path, Path(baseline), out_dir,
                               max_latency_regression=cfg.bench.max_latency_regression,
                               max_accuracy_drop=cfg.bench.max_accuracy_drop)
    click.echo(report.markdown)


# ---------------------------------------------------------------------------------------------------- train (stage)
def _parse_unfreeze(text: str | None) -> str | int | None:
    from edgetl.errors import ConfigError

    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"--unfreeze: expected 'all' or a number of blocks, got {text!r}") from exc


@cli.command("train")
@click.option("--data", "-d", default=None, help="ImageFolder root (train/CLASS/*.jpg [val/ test/]) or 'digits'.")
@click.option("--backbone", "-b", default=None, help="Backbone name (see `edgetl backbones`) [default: efficientnet_lite0].")
@click.option("--weights", default=None, help="'default' (pretrained), 'none' (random init), or a checkpoint path.")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs after the head warm-up [10].")
@click.option("--head-epochs", type=int, default=None, help="Head-only warm-up epochs, backbone frozen [2].")
@click.option("--image-size", type=int, default=None, help="Input size (default: the target's).")
@click.option("--batch-size", type=int, default=None, help="Images per step (per process under torchrun) [32].")
@click.option("--unfreeze", default=None, help="Fine-tune 'all' layers or only the last N blocks [all].")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, data order and augmentation [0].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/train/last.pt.")
@click.option("--strict", is_flag=True, help="Fail on unreadable images instead of skipping them.")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config; flags override it.")
@click.option("--out", "-o", default=None, help="Run directory; writes OUT/train [default: runs/default].")
@click.option("--verbose", "-v", is_flag=True)
def train_cmd(data: str | None, backbone: str | None, weights: str | None, epochs: int | None,
              head_epochs: int | None, image_size: int | None, batch_size: int | None, unfreeze: str | None,
              seed: int | None, resume: bool, strict: bool, target: str | None, config_file: str | None,
              out: str | None, verbose: bool) -> None:
    """Fine-tune a backbone on your classes: head warm-up, then fine-tuning with early stopping.

    \b
    Writes OUT/train/model.pt (best weights), labels.json, split.json, metrics.json and manifest.json. Ctrl-C
    keeps OUT/train/last.pt (the last finished epoch); add --resume to continue from it. Runs on CUDA with mixed
    precision when present; under `torchrun --nproc_per_node N` it trains data-parallel.

    \b
    Examples:
      edgetl train --data ../shared/datasets/hymenoptera --out runs/hymenoptera
      edgetl train --data digits --backbone tiny --image-size 32 --epochs 3
      torchrun --nproc_per_node 2 -m edgetl.cli train --data path/to/imagefolder --out runs/ddp
    """
    import os

    from rich.console import Console
    from rich.table import Table

    from edgetl.config import load_build_config
    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    _setup_logging(verbose)
    cfg = load_build_config(config_file).with_overrides({
        "target": target, "out": out, "data.path": data, "data.strict": True if strict else None,
        "train.backbone": backbone, "train.weights": weights, "train.epochs": epochs,
        "train.head_epochs": head_epochs, "train.image_size": image_size, "train.batch_size": batch_size,
        "train.unfreeze": _parse_unfreeze(unfreeze), "train.seed": seed,
    })
    profile = load_target(cfg.target)
    result = finetune(cfg, profile, Path(cfg.out) / "train", resume=resume)
    if os.environ.get("RANK", "0") != "0":
        return
    table = Table(title=f"edgetl train: {cfg.train.backbone} on {cfg.data.path}")
    for column in ("best val acc", f"{result.eval_split} acc", "best epoch", "epochs run", "wall time", "checkpoint"):
        table.add_column(column)
    table.add_row(f"{100 * result.best_val_accuracy:.2f}%", f"{100 * result.eval_accuracy:.2f}%",
                  str(result.best_epoch), str(result.epochs_run) + (" (early stop)" if result.stopped_early else ""),
                  f"{result.wall_time_s:.1f} s", str(result.checkpoint))
    Console(width=140).print(table)


# ---------------------------------------------------------------------------------------------------- quantize, export
@cli.command("quantize")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its quantize: section); flags override it.")
@click.option("--out", "-o", default=None, help="Run directory; reads OUT/train, writes OUT/quantize [runs/default].")
@click.option("--qat-epochs", type=int, default=None, help="Quantization-aware training epochs [2].")
@click.option("--calibration-images", type=int, default=None, help="Training images for the PTQ baseline [256].")
@click.option("--no-qat", is_flag=True, help="Post-training quantization only (fast, usually less accurate).")
@click.option("--verbose", "-v", is_flag=True)
def quantize_cmd(target: str | None, config_file: str | None, out: str | None, qat_epochs: int | None,
                 calibration_images: int | None, no_qat: bool, verbose: bool) -> None:
    """Quantize the fine-tuned model to int8: QAT (torchao PT2E) plus a PTQ baseline, compared on torch.

    \b
    Writes OUT/quantize/qat.pt2 and ptq.pt2 (torch.export programs of the int8 models), metrics.json and
    manifest.json. `edgetl export` turns them into ONNX and OpenVINO IR.

    Example: edgetl quantize --out runs/hymenoptera --qat-epochs 2
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.config import load_build_config
    from edgetl.stages.quantize import quantize
    from edgetl.targets import load_target

    _setup_logging(verbose)
    cfg = load_build_config(config_file).with_overrides({
        "target": target, "out": out, "quantize.qat_epochs": qat_epochs,
        "quantize.calibration_images": calibration_images, "quantize.qat": False if no_qat else None,
    })
    profile = load_target(cfg.target)
    run = Path(cfg.out)
    from edgetl.pipeline.engine import Context

    float_dir = Context(cfg, profile, run, current="quantize").input_dir("float_model") or run / "train"
    result = quantize(cfg, profile, float_dir, run / "quantize")
    table = Table(title=f"edgetl quantize: torch top-1 on the {result.eval_split} split")
    for column in ("model", "accuracy", "vs fp32", "wall time", "file"):
        table.add_column(column)
    fp32 = result.accuracy["fp32"]
    table.add_row("fp32", f"{100 * fp32:.2f}%", "-", "-", str(float_dir / "model.pt"))
    for name, path in result.programs.items():
        acc = result.accuracy[name]
        table.add_row(f"int8 {name}", f"{100 * acc:.2f}%", f"{100 * (acc - fp32):+.2f} pt",
                      f"{result.wall_time_s.get(name, 0.0):.1f} s", str(path))
    Console(width=140).print(table)
    for kept in result.kept_float:
        click.echo(f"note: {kept['layer']} ({kept['kind']}) kept in float ({kept['reason']})")


@cli.command("export")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its export: section); flags override it.")
@click.option("--out", "-o", default=None, help="Run directory; reads OUT/train and OUT/quantize, writes OUT/export.")
@click.option("--verbose", "-v", is_flag=True)
def export_cmd(target: str | None, config_file: str | None, out: str | None, verbose: bool) -> None:
    """Export ONNX (fp32, int8 QDQ) and OpenVINO IR; check each against its torch model and prove int8 runs int8.

    \b
    Formats, opset and batch dimension come from the target profile. Int8 artifacts are exported when
    OUT/quantize exists (`edgetl quantize`). Exit 3 when an artifact disagrees with torch beyond the export:
    thresholds or runs convolutions in float.

    Example: edgetl export --out runs/hymenoptera --target cpu
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.config import load_build_config
    from edgetl.export.parity import describe_agreement
    from edgetl.stages.export import export
    from edgetl.targets import load_target

    _setup_logging(verbose)
    cfg = load_build_config(config_file).with_overrides({"target": target, "out": out})
    profile = load_target(cfg.target)
    run = Path(cfg.out)
    quant = run / "quantize" if (run / "quantize" / "manifest.json").is_file() else None
    from edgetl.pipeline.engine import Context

    float_dir = Context(cfg, profile, run, current="export").input_dir("float_model") or run / "train"
    result = export(cfg, profile, float_dir, quant, run / "export")
    table = Table(title=f"edgetl export: {run / 'export'} (target {profile.name})")
    for column in ("artifact", "precision", "size MB", "int8 convs+fc", "agreement", "max diff", "accuracy"):
        table.add_column(column)
    for a in result.artifacts:
        p = a.parity
        table.add_row(a.name, a.precision, f"{a.size_bytes / 1e6:.2f}",
                      f"{a.int8_ops}/{(a.int8_ops or 0) + (a.float_ops or 0)}",
                      describe_agreement(p), f"{p['max_logit_diff']:.3g}", f"{100 * p['accuracy']:.2f}%")
    Console(width=140).print(table)
    if quant is None:
        click.echo("note: no OUT/quantize: fp32 only (run `edgetl quantize` first for int8)")


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point. SIGTERM (a CI timeout, ``kill``, a container stop) takes the Ctrl-C path:
    partial files are discarded, DataLoader workers are shut down, and the exit code is 130."""
    import faulthandler
    import signal

    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    # a crash inside a native library (a runtime, an exporter) prints the Python stack instead of dying silently
    faulthandler.enable()
    cli.main(prog_name="edgetl")

