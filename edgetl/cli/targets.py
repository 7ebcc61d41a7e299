"""``edgetl targets`` and ``edgetl backbones``: what is registered."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import Group, cli


@cli.group(cls=Group)
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
