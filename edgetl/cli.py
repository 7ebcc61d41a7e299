"""The command line: parse, load config, call the library, map ``EdgetlError`` to a message and an exit code.

Exit codes: 0 ok, 1 a gate or budget failed, 2 usage or input error, 3 runtime/export failure, 130 interrupted.
"""

from __future__ import annotations

import sys
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
    """


# ---------------------------------------------------------------------------------------------------- targets
@cli.group(cls=_Group)
def targets() -> None:
    """List, show and validate target profiles (targets/*.yaml)."""


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


# ---------------------------------------------------------------------------------------------------- train
# (stage commands are added below, one section per stage, each calling its stages/ module)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="edgetl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
