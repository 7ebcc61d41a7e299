"""``edgetl bench``, ``report`` and ``gate``: measure, render, compare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edgetl.cli import cli
from edgetl.cli.common import load_settings, parse_batch_sizes

if TYPE_CHECKING:
    from edgetl.config import BuildConfig
    from edgetl.targets import TargetProfile


def device_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--device``, ``--device-python``, ``--identity``, ``--ssh-config``: a real device to measure on."""
    for option in reversed([
        click.option("--device", "device_url", default=None, metavar="ssh://USER@HOST[:PORT][/WORKDIR]",
                     help="Also measure on this device over SSH (keys or agent only; default: the config's "
                          "bench.device, else the target profile's device:)."),
        click.option("--device-python", default=None, metavar="PATH",
                     help="The device's python with numpy and the runtime [default: python3 on its PATH]."),
        click.option("--identity", "identity_file", default=None, metavar="FILE", help="SSH private key (ssh -i)."),
        click.option("--ssh-config", default=None, metavar="FILE", help="Use this ssh config instead of ~/.ssh/config."),
    ]):
        command = option(command)
    return command


def apply_device_flags(cfg: BuildConfig, profile: TargetProfile, url: str | None, python: str | None,
                       identity_file: str | None, ssh_config: str | None) -> BuildConfig:
    """``cfg`` with ``bench.device`` set from the flags, on top of the config's or the target's device entry.

    The target's entry is copied into ``bench.device`` too, so the build's bench stage reruns when it changes.
    """
    from edgetl.errors import ConfigError

    base = cfg.bench.device or profile.device
    flags = {k: v for k, v in (("python", python), ("identity_file", identity_file), ("ssh_config", ssh_config))
             if v is not None}
    if url is not None:
        spec: dict[str, Any] = {"url": url, **flags}
    elif base is not None:
        spec = {**base.model_dump(), **flags}
    elif flags:
        names = {"python": "--device-python", "identity_file": "--identity", "ssh_config": "--ssh-config"}
        raise ConfigError(f"{names[next(iter(flags))]} needs a device",
                          hint="add --device ssh://USER@HOST (or a device: entry in the target or bench.device)")
    else:
        return cfg
    return cfg.with_overrides({"bench.device": spec})


@cli.command("bench")
@click.argument("source", type=click.Path())
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its bench: section); flags override it.")
@click.option("--out", "-o", default=None,
              help="Output directory [default: SOURCE/bench for a run, runs/bench/NAME for a model file].")
@click.option("--data", "-d", default=None, help="ImageFolder root for accuracy (default: the run's own split).")
@click.option("--baseline", type=click.Path(), default=None,
              help="A previous results.json: exit 1 if a row got slower (beyond the noise) or less accurate than "
                   "allowed, 4 if the noise is too large to tell.")
@click.option("--max-latency-regression", default=None, help="Allowed p50 rise over the baseline, e.g. 10% [10%].")
@click.option("--max-accuracy-drop", type=float, default=None, help="Allowed top-1 drop in points [0.5].")
@click.option("--threads", type=int, default=None, help="Threads per runtime (default: the target's, else all).")
@click.option("--batch-sizes", default=None, help="Throughput batch sizes, e.g. 1,8 (default: the target's).")
@click.option("--iterations", type=int, default=None, help="Minimum timed runs per row (default: the target's).")
@click.option("--min-time", type=float, default=None, help="Minimum seconds of timed runs per row.")
@click.option("--rounds", type=click.IntRange(min=1), default=None,
              help="Timing rounds per row, rows interleaved; runs and time are shared out (default: the target's, 5).")
@click.option("--no-accuracy", is_flag=True, help="Latency only.")
@click.option("--no-report", is_flag=True, help="Do not write report.md / report.html.")
@device_options
def bench_cmd(source: str, target: str | None, config_file: str | None, out: str | None, data: str | None,
              baseline: str | None, max_latency_regression: str | None, max_accuracy_drop: float | None,
              threads: int | None, batch_sizes: str | None, iterations: int | None, min_time: float | None,
              rounds: int | None, no_accuracy: bool, no_report: bool, device_url: str | None, device_python: str | None,
              identity_file: str | None, ssh_config: str | None) -> None:
    """Latency, throughput, memory and accuracy of every artifact on every runtime of the target.

    SOURCE is a run directory (OUT/, after `edgetl export`) or one model file (.onnx, or OpenVINO .xml + .bin).
    Runtimes or devices this host lacks are listed as skipped with the reason; where the target is another
    device (a Jetson, an NPU) the host's CPU runtimes run as labelled proxies, and rows the target's published
    peaks allow are estimated (labelled estimate, with their error band). With --device (or a device: entry)
    the target's own runtime rows are measured on the device as well, with its own python and runtime: the
    models, a small runner and the preprocessed evaluation inputs go to a temporary directory there, which is
    removed afterwards. Each row is timed in rounds, the rows taking turns, and its p50 is the median of its
    round medians with their spread. Writes results.json, report.md and report.html; with --baseline, also
    gate.md, and exits 1 on a regression beyond both runs' noise, 4 when the noise is too large to tell. A
    device that cannot be reached or used exits 3 with the reason.

    \b
    Examples:
      edgetl bench runs/default --target cpu
      edgetl bench runs/default --target raspberry-pi-5 --device ssh://pi@rpi5.local --device-python ~/venv/bin/python
      edgetl bench model.onnx --data ../shared/datasets/hymenoptera --threads 2 --batch-sizes 1,8
      edgetl bench runs/default --baseline main/results.json --max-latency-regression 10% --max-accuracy-drop 0.5
    """
    from rich.console import Console

    from edgetl.bench.gate import check_regressions, parse_percent
    from edgetl.bench.results import RESULTS_NAME
    from edgetl.report.render import headline_lines, results_table, write_report
    from edgetl.stages.benchmark import benchmark

    cfg, profile = load_settings(config_file, {
        "target": target, "bench.threads": threads, "bench.batch_sizes": parse_batch_sizes(batch_sizes),
        "bench.min_iterations": iterations, "bench.min_time_s": min_time, "bench.rounds": rounds,
        "bench.accuracy": False if no_accuracy else None,
        "bench.max_latency_regression": None if max_latency_regression is None
        else parse_percent(max_latency_regression),
        "bench.max_accuracy_drop": max_accuracy_drop,
    })
    cfg = apply_device_flags(cfg, profile, device_url, device_python, identity_file, ssh_config)
    from contextlib import nullcontext

    from edgetl.cli.common import check_output_dir
    from edgetl.fsutil import dir_lock

    src = Path(source)
    out_dir = Path(out) if out else (src / "bench" if src.is_dir() else Path("runs") / "bench" / src.stem)
    check_output_dir(out_dir)
    writes_into_run = src.is_dir() and src.resolve() in out_dir.resolve().parents
    with dir_lock(src) if writes_into_run else nullcontext():
        results = benchmark(cfg, profile, src, out_dir, data=data)
    Console(width=170).print(results_table(results))
    for line in headline_lines(results):  # what ships, and the split behind every accuracy
        click.echo(line)
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
    from edgetl.cli.common import check_output_dir
    from edgetl.report.render import write_report

    path = Path(results)
    out_dir = check_output_dir(Path(out) if out else (path if path.is_dir() else path.parent))
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
    """Compare two results.json files without re-measuring; exit 1 on a regression, 4 if inconclusive (gate.md).

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
