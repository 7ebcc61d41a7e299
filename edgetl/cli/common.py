"""What every command shares: logging, config + overrides + target loaded once, the results table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgetl.config import BuildConfig
    from edgetl.targets import TargetProfile


def load_settings(config_file: str | None, overrides: dict[str, Any]) -> tuple[BuildConfig, TargetProfile]:
    """The build config (YAML, then the command's flags; ``None`` flags ignored) and its target profile."""
    from edgetl.config import load_build_config
    from edgetl.targets import load_target

    cfg = load_build_config(config_file).with_overrides(overrides)
    if "out" in overrides:  # the command writes into the run directory
        check_output_dir(cfg.out)
    if "train.weights" in overrides:
        _check_weights(cfg.train.weights)
    return cfg, load_target(cfg.target)


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` is a directory edgetl can create or write into; else ``ConfigError`` (exit 2) naming why."""
    import os
    import tempfile

    from edgetl.errors import ConfigError

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p} is a file, not a directory", hint="pass a directory (it is created if missing)")
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {p}: {existing} is a file, so the directory cannot be created there",
                          hint="pass a directory path")
    try:  # a real write (permission bits, read-only mounts, root on a filesystem that refuses it)
        fd, probe = tempfile.mkstemp(prefix=".edgetl-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{option} {p}: cannot write in {existing} ({exc.strerror or exc})",
                          hint=f"choose another {option}, or fix the directory's permissions") from exc
    return p


def _check_weights(weights: str) -> None:
    from edgetl.errors import WeightsError

    if weights not in ("default", "none") and Path(weights).expanduser().is_dir():
        raise WeightsError(f"--weights {weights} is a directory; expected a checkpoint file (.pt, .pth)",
                           hint="pass the file itself, 'default' (pretrained) or 'none' (random init)")


def setup_logging(verbose: bool = False) -> None:
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("edgetl")
    if not logger.handlers:
        handler = RichHandler(show_time=False, show_path=False, markup=False)
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    from edgetl.library_logs import quiet_library_logs

    quiet_library_logs()  # before any stage imports torchao (a text model's training does)



def print_results(out: Path) -> None:
    import click

    from edgetl.fsutil import read_json

    path = out / "bench" / "results.json"
    if not path.is_file():
        return
    from rich.console import Console
    from rich.table import Table

    results = read_json(path)
    table = Table(title=f"results: {results.get('backbone')} on {results.get('dataset')} "
                        f"({results.get('eval_split')} split), target {results.get('target')}")
    split = results.get("eval_split")
    for col in ("artifact", "runtime", "precision", "measured on", "status", f"top-1 on {split}" if split else "top-1",
                "p50 ms", "p90 ms",
                "size MB", "MMACs", "params M"):
        table.add_column(col)
    for r in results.get("rows", []):
        lat = r.get("latency_ms") or {}
        acc = r.get("accuracy")
        est = (r.get("estimate") or {}).get("latency_ms")
        runtime = f"{r.get('runtime')}:{r.get('device')}" + (" (proxy)" if r.get("proxy") else "")
        where = r.get("measured_on") or "host"
        if where == "device":
            where = f"device {r.get('device_hostname') or r.get('device_address') or ''}".strip()
        table.add_row(
            str(r.get("name")), runtime, str(r.get("precision")), where,
            str(r.get("status")) if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason', '')}"[:60],
            "-" if acc is None else f"{acc * 100:.2f}%",
            (f"~{est:.2f} est." if est is not None else "-") if lat.get("p50") is None else f"{lat['p50']:.2f}",
            "-" if lat.get("p90") is None else f"{lat['p90']:.2f}",
            "-" if not r.get("size_bytes") else f"{r['size_bytes'] / 1e6:.2f}",
            "-" if r.get("macs") is None else f"{r['macs'] / 1e6:.1f}",
            "-" if r.get("params") is None else f"{r['params'] / 1e6:.2f}",
        )
    Console(width=160).print(table)
    from edgetl.bench.results import load_results
    from edgetl.report.render import headline_lines

    loaded = load_results(path)
    for line in headline_lines(loaded):  # what ships, and the split behind every accuracy
        click.echo(line)
    _print_distillation(loaded)
    notes = [n for n in results.get("notes", []) if "estimate" in n]
    for note in notes:  # an estimate is never shown without its band
        click.echo(f"note: {note}")


def _print_distillation(results: Any) -> None:
    """A build with a teacher: the teacher, the distilled student and the student alone, on one split."""
    import click
    from rich.console import Console
    from rich.table import Table

    from edgetl.report.distillation import distillation_lines, distillation_table

    table = distillation_table(results)
    if table is None:
        return
    shown = Table(title=table.title)
    for header in table.headers:
        shown.add_column(header)
    for row in table.rows:
        shown.add_row(*row)
    Console(width=160).print(shown)
    for line in distillation_lines(results):
        click.echo(line.replace("**", ""))


def parse_batch_sizes(text: str | None) -> tuple[int, ...] | None:
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


