"""One command per stage: ``edgetl train``, ``prune``, ``quantize`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgetl.cli import cli
from edgetl.cli.common import load_settings, setup_logging

if TYPE_CHECKING:
    from edgetl.config import BuildConfig


def current_float_dir(run: Path, before: str) -> Path:
    """The float model a single-stage command reads: the latest stage before ``before`` that produces one and has
    written its manifest in ``run`` (``prune/`` once `edgetl prune` ran, else ``train/``)."""
    from edgetl.pipeline.engine import ordered_stages

    found = run / "train"
    for stage in ordered_stages():
        if stage.name == before:
            break
        if "float_model" in stage.produces and (run / stage.name / "manifest.json").is_file():
            found = run / stage.name
    return found


def with_prune_goal(cfg: BuildConfig, *, ratio: float | None = None, macs_fraction: float | None = None,
                    params_fraction: float | None = None, enable: bool = False) -> BuildConfig:
    """``cfg`` with the pruning goal given on the command line, which replaces the config's (exactly one is
    allowed); a goal, or ``enable``, turns the prune stage on. Out-of-range values are ``ConfigError``s."""
    goal = {"ratio": ratio, "macs_fraction": macs_fraction, "params_fraction": params_fraction}
    if all(v is None for v in goal.values()):
        return cfg.with_overrides({"prune.enabled": True}) if enable else cfg
    cleared = cfg.model_copy(update={"prune": cfg.prune.model_copy(update=dict.fromkeys(goal))})
    return cleared.with_overrides({**{f"prune.{k}": v for k, v in goal.items()}, "prune.enabled": True})


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
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs after the head-only ones [10].")
@click.option("--head-epochs", type=int, default=None,
              help="Head-only epochs before fine-tuning, backbone frozen: the warm-up, or LP-FT's probe "
                   "[2 warm-up, 8 probe].")
@click.option("--image-size", type=int, default=None, help="Input size (default: the target's).")
@click.option("--batch-size", type=int, default=None, help="Images per step (per process under torchrun) [32].")
@click.option("--unfreeze", default=None, help="Fine-tune 'all' layers or only the last N blocks [all].")
@click.option("--strategy", type=click.Choice(["auto", "warmup_finetune", "lp_ft"]), default=None,
              help="Head warm-up then fine-tuning, or LP-FT: linear probe then a gentle full fine-tune; auto: "
                   "lp_ft for a pretrained image backbone, else warmup_finetune [auto].")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, data order and augmentation [0].")
@click.option("--teacher", default=None, metavar="RUN_DIR",
              help="Distil from that build's float model (same task, classes and input size; any backbone).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/train/last.pt.")
@click.option("--strict", is_flag=True, help="Fail on unreadable images instead of skipping them.")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config; flags override it.")
@click.option("--out", "-o", default=None, help="Run directory; writes OUT/train [default: runs/default].")
@click.option("--verbose", "-v", is_flag=True)
def train_cmd(data: str | None, backbone: str | None, weights: str | None, epochs: int | None,
              head_epochs: int | None, image_size: int | None, batch_size: int | None, unfreeze: str | None,
              strategy: str | None, seed: int | None, teacher: str | None, resume: bool, strict: bool, target: str | None,
              config_file: str | None, out: str | None, verbose: bool) -> None:
    """Fine-tune a backbone on your classes: a head-only phase, then fine-tuning with early stopping.

    The recipe (--strategy auto): LP-FT for a pretrained image backbone (a linear probe on the frozen features,
    then a gentle fine-tune of every layer on the pretrained BatchNorm statistics), the head warm-up recipe for
    random weights and text. The manifest records the recipe that ran.

    \b
    Writes OUT/train/model.pt (best weights), labels.json, split.json, metrics.json and manifest.json. Ctrl-C
    keeps OUT/train/last.pt (the last finished epoch); add --resume to continue from it. Runs on CUDA with mixed
    precision when present; under `torchrun --nproc_per_node N` it trains data-parallel.

    \b
    With --teacher this command trains the distilled student only (one stage, as every stage command). To see
    what distillation bought, `edgetl build --teacher RUN_DIR` also trains the same student alone (stage
    student_alone: same split, seed and recipe, cross-entropy only) and reports the teacher, both students and
    the gain on one split; or run this command again without --teacher into another --out (the same data and
    seed give the same split) and compare the two tables.

    \b
    Examples:
      edgetl train --data ../shared/datasets/hymenoptera --out runs/hymenoptera
      edgetl train --data digits --backbone tiny --image-size 32 --epochs 3
      edgetl train --data DIR --backbone efficientnet_lite0 --teacher runs/lite2 --out runs/lite0-kd
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
        "train.unfreeze": _parse_unfreeze(unfreeze), "train.seed": seed, "train.teacher": teacher,
        "train.strategy": strategy,
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
    if cfg.train.teacher is not None:
        click.echo(f"distilled from {cfg.train.teacher}. For what distillation bought, `edgetl build` with the same "
                   "--teacher also trains this student alone and reports both on one split (OUT/student_alone, "
                   "results.json distillation).")


@cli.command("prune")
@click.option("--ratio", type=float, default=None, help="Remove this fraction of every prunable group's channels.")
@click.option("--macs", "macs_fraction", type=float, default=None, help="Keep at most this fraction of the MACs.")
@click.option("--params", "params_fraction", type=float, default=None,
              help="Keep at most this fraction of the parameters.")
@click.option("--importance", type=click.Choice(["layer", "global"]), default=None,
              help="Rank channels per layer or across layers [layer].")
@click.option("--protect", multiple=True, metavar="MODULE",
              help="Module path kept whole (repeatable; default: the stem and the classifier).")
@click.option("--epochs", type=int, default=None, help="Recovery fine-tuning epochs [3].")
@click.option("--lr", type=float, default=None, help="Recovery learning rate [1e-3].")
@click.option("--no-distill", is_flag=True, help="Recover with cross-entropy only (no teacher).")
@click.option("--temperature", type=float, default=None, help="Distillation temperature [4].")
@click.option("--alpha", type=float, default=None, help="Weight of the distillation term, 0..1 [0.5].")
@click.option("--resume", is_flag=True, help="Continue an interrupted recovery from OUT/prune/last.pt.")
@click.option("--target", "-t", default=None, help="Target profile name, alias or YAML path [default: cpu].")
@click.option("--config", "-c", "config_file", type=click.Path(dir_okay=False), default=None,
              help="YAML build config (its prune: section); flags override it.")
@click.option("--out", "-o", default=None, help="Run directory; reads OUT/train, writes OUT/prune [runs/default].")
@click.option("--verbose", "-v", is_flag=True)
def prune_cmd(ratio: float | None, macs_fraction: float | None, params_fraction: float | None,
              importance: str | None, protect: tuple[str, ...], epochs: int | None, lr: float | None,
              no_distill: bool, temperature: float | None, alpha: float | None, resume: bool, target: str | None,
              config_file: str | None, out: str | None, verbose: bool) -> None:
    """Prune channels of the fine-tuned model (Torch-Pruning) and recover it by distillation from the unpruned one.

    \b
    Give one goal: --ratio, --macs or --params. Kept channel counts are multiples of 8; the stem and the
    classifier stay whole. Writes OUT/prune/model.pt (a float model artifact: `edgetl quantize`, `export`, `bench`
    and `bundle` use it from then on), metrics.json and manifest.json (MACs, parameters, channels per layer).

    \b
    Examples:
      edgetl prune --out runs/hymenoptera --macs 0.5
      edgetl prune --out runs/hymenoptera --ratio 0.3 --epochs 5 --no-distill
    """
    from rich.console import Console
    from rich.table import Table

    from edgetl.stages.prune import prune

    setup_logging(verbose)
    cfg, profile = load_settings(config_file, {
        "target": target, "out": out, "prune.importance": importance,
        "prune.protected": list(protect) if protect else None, "prune.epochs": epochs, "prune.lr": lr,
        "prune.distill": False if no_distill else None, "prune.temperature": temperature, "prune.alpha": alpha,
    })
    cfg = with_prune_goal(cfg, ratio=ratio, macs_fraction=macs_fraction, params_fraction=params_fraction,
                          enable=True)
    run = Path(cfg.out)
    result = prune(cfg, profile, run / "train", run / "prune", resume=resume)
    r = result.report
    table = Table(title=f"edgetl prune: {run / 'prune'} (ratio {r.ratio:.3f}, {r.importance} importance, "
                        f"recovery: {result.recovery})")
    for column in ("model", "MACs", "params", "val acc", f"{result.eval_split} acc"):
        table.add_column(column)
    table.add_row("unpruned", f"{r.macs_before / 1e6:.1f} M", f"{r.params_before / 1e6:.2f} M",
                  f"{100 * result.unpruned_val:.2f}%", f"{100 * result.unpruned_eval:.2f}%")
    table.add_row("pruned, no recovery", f"{r.macs_after / 1e6:.1f} M ({100 * r.macs_fraction:.1f}%)",
                  f"{r.params_after / 1e6:.2f} M ({100 * r.params_fraction:.1f}%)", f"{100 * result.pruned_val:.2f}%",
                  "-")
    table.add_row(f"pruned + {result.recovery} (epoch {result.best_epoch})", "", "",
                  f"{100 * result.best_val:.2f}%", f"{100 * result.eval_accuracy:.2f}%")
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
    import os
    from contextlib import nullcontext

    from edgetl.fsutil import dir_lock

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun rank 0 holds the run directory's lock
    float_dir = current_float_dir(run, "quantize")
    with dir_lock(run) if main_rank else nullcontext():
        result = quantize(cfg, profile, float_dir, run / "quantize")
    if not main_rank:  # under torchrun only rank 0 reports
        return
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

    float_dir = current_float_dir(run, "export")
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
