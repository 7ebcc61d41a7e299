"""One command per stage: ``edgetl train``, ``quantize`` and ``export``."""

from __future__ import annotations

from pathlib import Path

import click

from edgetl.cli import cli
from edgetl.cli.common import load_settings, setup_logging


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

    from edgetl.stages.finetune import finetune

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {
        "target": target, "out": out, "data.path": data, "data.strict": True if strict else None,
        "train.backbone": backbone, "train.weights": weights, "train.epochs": epochs,
        "train.head_epochs": head_epochs, "train.image_size": image_size, "train.batch_size": batch_size,
        "train.unfreeze": _parse_unfreeze(unfreeze), "train.seed": seed,
    })
    from contextlib import nullcontext

    from edgetl.fsutil import dir_lock

    # under torchrun every rank writes into the same run: rank 0 holds the lock for all of them
    with dir_lock(cfg.out) if os.environ.get("RANK", "0") == "0" else nullcontext():
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

    from edgetl.stages.quantize import quantize

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {
        "target": target, "out": out, "quantize.qat_epochs": qat_epochs,
        "quantize.calibration_images": calibration_images, "quantize.qat": False if no_qat else None,
    })
    run = Path(cfg.out)
    from edgetl.fsutil import dir_lock
    from edgetl.pipeline.engine import Context

    float_dir = Context(cfg, profile, run, current="quantize").input_dir("float_model") or run / "train"
    with dir_lock(run):
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

    from edgetl.export.parity import describe_agreement
    from edgetl.stages.export import export

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {"target": target, "out": out})
    run = Path(cfg.out)
    quant = run / "quantize" if (run / "quantize" / "manifest.json").is_file() else None
    from edgetl.fsutil import dir_lock
    from edgetl.pipeline.engine import Context

    float_dir = Context(cfg, profile, run, current="export").input_dir("float_model") or run / "train"
    with dir_lock(run):
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
