"""``edgetl build``: every stage for a target, cached and resumable, ending in a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli
from edgetl.cli.bench import apply_device_flags, device_options
from edgetl.cli.common import load_settings, print_results, setup_logging
from edgetl.errors import BudgetExceededError


@cli.command("build")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--data", "-d", default=None, help="ImageFolder root (train/CLASS/*.jpg [val/ test/]) or 'digits'.")
@click.option("--backbone", "-b", default=None, help="Backbone name (see `edgetl backbones`) [default: efficientnet_lite0].")
@click.option("--weights", default=None, help="'default' (pretrained), 'none', or a checkpoint path.")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config; flags override it.")
@click.option("--out", "-o", default=None, help="Run directory [default: runs/default].")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs after the head-only ones (warm-up or LP-FT probe) [10].")
@click.option("--image-size", type=int, default=None, help="Input size (default: the target's).")
@click.option("--prune-ratio", type=float, default=None,
              help="Add the prune stage: remove this fraction of every prunable group's channels (0..1).")
@click.option("--prune-macs", type=float, default=None,
              help="Add the prune stage: keep at most this fraction of the MACs (0..1).")
@click.option("--teacher", default=None, metavar="RUN_DIR",
              help="Fine-tune by distillation from that build's float model (same task, classes, input size); "
                   "adds the student_alone stage (the same student without the teacher) and reports the teacher, "
                   "both students and the gain on one split.")
@click.option("--adapt-data", default=None, metavar="DIR",
              help="Adapt the model to unlabelled images from the deployment domain (any layout; never evaluated "
                   "on): adds the adapt stage (adapt.method adabn or tent), and int8 calibrates on them.")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Rerun a stage (and those after it) even if cached: train, student_alone, prune, adapt, quantize, "
                   "export, bench, report, bundle.")
@click.option("--no-budget-check", is_flag=True, help="Report budget misses without failing the build.")
@click.option("--verbose", "-v", is_flag=True)
@device_options
def build_cmd(target: str | None, data: str | None, backbone: str | None, weights: str | None,
              config_file: str | None, out: str | None, epochs: int | None, image_size: int | None,
              prune_ratio: float | None, prune_macs: float | None, teacher: str | None, adapt_data: str | None,
              force: tuple[str, ...],
              no_budget_check: bool, verbose: bool, device_url: str | None, device_python: str | None,
              identity_file: str | None, ssh_config: str | None) -> None:
    """Run the whole pipeline for a target: fine-tune -> [student alone] -> [prune] -> [adapt] -> quantize -> export ->
    bench -> report -> bundle.

    \b
    Every stage is cached by the hash of its inputs: a rerun with nothing changed reuses everything; changing a
    setting reruns that stage and the ones after it; an interrupted build resumes. Precision, formats, input
    size, batch sizes and runtimes come from the target profile. Exit 1 when a budget of the target is missed.
    With --device ssh://... (or a device: entry in the target profile or bench.device in the config) the
    target's rows are also measured on the device, and its latency and memory budgets are checked there.

    \b
    Examples:
      edgetl build --target cpu                      # built-in digits data set, offline
      edgetl build --target jetson --data ../shared/datasets/hymenoptera --out runs/hymenoptera
      edgetl build --config my-build.yaml --force bench
      edgetl build --data ../shared/datasets/hymenoptera --prune-macs 0.5 --out runs/hymenoptera-pruned
      edgetl build --data DIR --backbone mobilenet_v3_small --teacher runs/lite2 --out runs/small-kd
      edgetl build --data ../shared/datasets/hymenoptera --adapt-data camera_frames/ --out runs/adapted
      edgetl build --target raspberry-pi-5 --device ssh://pi@rpi5.local --device-python /home/pi/venv/bin/python
    """
    from edgetl.cli.stages import with_prune_goal
    from edgetl.pipeline import build

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {
        "target": target, "data.path": data, "train.backbone": backbone, "train.weights": weights,
        "out": out, "train.epochs": epochs, "train.image_size": image_size,
        "budget_check": False if no_budget_check else None, "train.teacher": teacher,
        "data.adapt": adapt_data,
    })
    cfg = with_prune_goal(cfg, ratio=prune_ratio, macs_fraction=prune_macs)
    cfg = apply_device_flags(cfg, profile, device_url, device_python, identity_file, ssh_config)
    click.echo(f"edgetl build: target {profile.name}, data {cfg.data.path}, backbone {cfg.train.backbone}, "
               f"out {cfg.out}" + (f", device {cfg.bench.device.url}" if cfg.bench.device else ""))

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
        print_results(Path(cfg.out))
        raise
    print_results(result.out)
    from edgetl.bench.budgets import budget_table

    click.echo(budget_table(result.budget_rows))
    click.echo(f"\nreport: {result.out / 'report' / 'report.html'}")
    click.echo(f"bundle: {result.bundle_dir} (+ {result.out / 'bundle.tar.gz'})")
    from edgetl.stages.bundle import summary_lines

    if result.bundle_dir is not None and (result.bundle_dir / "manifest.json").is_file():
        for line in summary_lines(result.bundle_dir):
            click.echo(line)
