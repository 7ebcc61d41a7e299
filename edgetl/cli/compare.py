"""``edgetl compare``: feature extraction, fine-tuning and random initialisation side by side."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli
from edgetl.cli.common import load_settings, setup_logging


@cli.command("compare")
@click.option("--data", "-d", default=None, help="ImageFolder root (train/CLASS/*.jpg [val/ test/]) or 'digits'.")
@click.option("--backbone", "-b", default=None, help="Backbone name (see `edgetl backbones`) [default: efficientnet_lite0].")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs after the head-only ones (every strategy).")
@click.option("--head-epochs", type=int, default=None,
              help="Head-only epochs, the warm-up or LP-FT's probe (every strategy) [2 warm-up, 8 probe].")
@click.option("--image-size", type=int, default=None, help="Input size (default: the target's).")
@click.option("--strategy", "strategies", multiple=True, metavar="NAME",
              help="A strategy to run (repeatable) [feature_extraction, finetune, lp_ft, scratch].")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config; flags override it.")
@click.option("--out", "-o", default=None, help="Output directory [default: runs/compare].")
@click.option("--verbose", "-v", is_flag=True)
def compare_cmd(data: str | None, backbone: str | None, epochs: int | None, head_epochs: int | None,
                image_size: int | None, strategies: tuple[str, ...], target: str | None, config_file: str | None,
                out: str | None, verbose: bool) -> None:
    """What transfer learning bought: train each strategy on the same data and split, and compare.

    \b
    feature_extraction  the pretrained backbone frozen, only the classifier trained (same epochs)
    finetune            head warm-up, then every layer fine-tuned
    lp_ft               LP-FT: linear probe on frozen features, then a gentle full fine-tune
    scratch             the same architecture and recipe from random weights
    Each run goes to OUT/<strategy>/ (a train stage directory); the table goes to the terminal and
    OUT/compare.json, the plot to OUT/compare.png. Accuracies are on the evaluation split (test where there is
    one), named in the table.

    \b
    Examples:
      edgetl compare --data ../shared/datasets/hymenoptera --out runs/compare-hymenoptera
      edgetl compare --data digits --backbone tiny --image-size 32 --strategy finetune --strategy scratch
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.compare import DEFAULT_STRATEGIES, compare
    from edgetl.fsutil import dir_lock

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {
        "out": out or "runs/compare", "data.path": data, "train.backbone": backbone, "train.epochs": epochs,
        "train.head_epochs": head_epochs, "train.image_size": image_size, "target": target,
    })
    with dir_lock(cfg.out):
        result = compare(cfg, profile, Path(cfg.out), strategies or DEFAULT_STRATEGIES)
    split = f"{result.eval_split} ({result.eval_images} images)"
    table = Table(title=f"edgetl compare: {cfg.train.backbone} on {cfg.data.path}, top-1 on {split}")
    for column in ("strategy", f"top-1 on {result.eval_split}", "best val acc", "best epoch", "epochs run",
                   "wall time", "what"):
        table.add_column(column)
    for r in result.results:
        table.add_row(r.strategy, f"{100 * r.eval_accuracy:.2f}%", f"{100 * r.best_val_accuracy:.2f}%",
                      str(r.best_epoch), str(r.epochs_run) + (" (early stop)" if r.stopped_early else ""),
                      f"{r.wall_time_s:.1f} s", r.description)
    Console(width=150).print(table)
    if result.split_selected_on:
        click.echo(f"note: the data has no test split, so the accuracies are on {result.eval_split}, the split each "
                   "strategy kept its best epoch on (optimistic, for all alike)")
    click.echo(f"compare: {result.json_path} (+ {result.plot_path.name})")
