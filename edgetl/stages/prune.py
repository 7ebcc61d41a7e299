"""Stage ``prune``: structured channel pruning of the current float model, then recovery by distillation.

Input: the current float model artifact (fine-tuning's, usually) and the data split its card names. The model is
pruned with ``edgetl.compress.prune_model`` (Torch-Pruning's DepGraph follows the coupled channels; the goal is a
ratio, a MACs or a parameter target; kept channels are multiples of ``round_to``; the stem and the classifier stay
whole), then fine-tuned to recover through the shared trainer with every layer trainable. The loss is knowledge
distillation from the unpruned model (``DistillationLoss``: ``alpha * T^2 * KL`` of temperature-softened logits plus
``(1 - alpha)`` cross-entropy), or cross-entropy alone with ``prune.distill`` off. The pruned model before any
recovery is judged as epoch 0 and the best epoch on validation is kept, so recovery never ends below its start.

Output: ``model.pt``, a float model artifact (a whole module: its layer widths are not the registry's) whose card
names the unpruned artifact as its lineage parent and carries the pruned MACs and parameters, ``metrics.json``
(per-epoch history) and ``manifest.json`` (the prune report: MACs, parameters, channels per layer). quantize,
export, bench and bundle pick it up as the current float model. ``last.pt`` (a state dict, loaded
``weights_only``) after each epoch makes an interrupted recovery resumable: pruning is deterministic, so the same
architecture is rebuilt and the weights loaded into it.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, ModelFileError
from edgetl.fsutil import atomic_path, sha256_json, write_json
from edgetl.manifest import MANIFEST_NAME, Manifest, hash_outputs, library_versions
from edgetl.targets import TargetProfile

if TYPE_CHECKING:
    from torch import nn

    from edgetl.compress import PruneGoal, PruneReport

log = logging.getLogger("edgetl.prune")

STAGE = "prune"
MODEL_NAME, LAST_NAME, METRICS_NAME = "model.pt", "last.pt", "metrics.json"


@dataclass(frozen=True)
class PruneStageResult:
    """What ``prune`` produced; the files are listed in ``out_dir/manifest.json``.

    Accuracies are top-1 in 0..1: ``*_val`` on the validation split (what recovery is judged on), ``*_eval`` on
    the evaluation split (test when the data has one, else val).
    """

    out_dir: Path
    model_path: Path
    report: PruneReport
    recovery: str  # "distill" | "cross_entropy" | "none"
    unpruned_val: float
    pruned_val: float  # after pruning, before recovery (epoch 0)
    best_val: float
    best_epoch: int  # 0: recovery never beat the pruned model
    epochs_run: int
    eval_split: str
    unpruned_eval: float
    eval_accuracy: float
    wall_time_s: float


def prune_goal(cfg: BuildConfig) -> PruneGoal:
    """The ``PruneGoal`` of ``cfg.prune`` (``ConfigError`` unless exactly one target is given)."""
    from edgetl.compress import PruneGoal

    p = cfg.prune
    return PruneGoal(ratio=p.ratio, macs_fraction=p.macs_fraction, params_fraction=p.params_fraction,
                     round_to=p.round_to, importance=p.importance, protected=p.protected)


def _input_hash(cfg: BuildConfig, source: Manifest) -> str:
    return sha256_json({"source": source.hash, "prune": cfg.prune.model_dump(mode="json"),
                        "train": cfg.train.model_dump(mode="json", exclude={"device", "threads"}),
                        "versions": library_versions()})


def prune(cfg: BuildConfig, target: TargetProfile, model_dir: Path, out_dir: Path, resume: bool = False
          ) -> PruneStageResult:
    """Prune the float model artifact in ``model_dir`` to ``cfg.prune``'s goal and recover it into ``out_dir``.

    Args:
        cfg: the build config; reads ``cfg.prune`` (goal, recovery, distillation) and ``cfg.train`` (batch size,
            augmentation, device, patience).
        target: the target profile (recorded; pruning itself is target-independent).
        model_dir: the stage directory of the float model (``OUT/train``).
        out_dir: the stage directory, usually ``OUT/prune``.
        resume: continue an interrupted recovery from ``out_dir/last.pt`` (same config and model required).

    Returns:
        A ``PruneStageResult``.

    Raises:
        ConfigError: no or several goals, a goal below what the protected layers allow, a layer Torch-Pruning
            cannot trace (named by its module path); raised before anything is written.

    Example:
        >>> prune(cfg.with_overrides({"prune.macs_fraction": 0.5}), load_target("cpu"), Path("runs/x/train"),
        ...       Path("runs/x/prune"))
    """
    import torch

    from edgetl.compress import prune_model
    from edgetl.stages.quantize import read_float_model
    from edgetl.training.distributed import DistContext

    started = time.perf_counter()
    goal = prune_goal(cfg)
    out_dir = Path(out_dir)
    inputs = read_float_model(Path(model_dir))
    source, task = inputs.artifact, inputs.task
    unpruned = source.load()
    example = task.example_inputs(source.card.io, 1)
    example_arg: Any = next(iter(example.values())) if len(example) == 1 else example
    result = prune_model(unpruned, example_arg, goal)  # ConfigErrors surface here, before any file is written
    report = result.report
    log.info("pruned %s: MACs %.1f%% (%d -> %d), parameters %.1f%%, ratio %.3f (%s importance)", source.ref,
             100 * report.macs_fraction, report.macs_before, report.macs_after, 100 * report.params_fraction,
             report.ratio, report.importance)
    input_hash = _input_hash(cfg, source.manifest)

    threads = torch.get_num_threads()
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    try:
        recovered, history = _recover(cfg, inputs, unpruned, result.model, out_dir, input_hash, resume,
                                      DistContext())
    finally:
        torch.set_num_threads(threads)
    return _finish(cfg, target, inputs, recovered, report, history, out_dir, input_hash, started)


@dataclass
class _History:
    state: Any  # TrainState
    recovery: str
    unpruned_val: float
    unpruned_eval: float
    eval_split: str
    eval_accuracy: float


def _recover(cfg: BuildConfig, inputs: Any, unpruned: nn.Module, pruned: nn.Module, out_dir: Path,
             input_hash: str, resume: bool, dist: Any) -> tuple[nn.Module, _History]:
    """Fine-tune ``pruned`` on the training split (distilling from ``unpruned``); the best epoch on val."""
    import torch

    from edgetl.backbones import get_backbone
    from edgetl.stages.finetune import eval_loader, select_device, train_loader
    from edgetl.training.loop import autocast_dtype_for, evaluate, param_groups
    from edgetl.training.losses import CrossEntropy, DistillationLoss
    from edgetl.training.progress import TrainProgress
    from edgetl.training.trainer import Callbacks, Judgement, Phase, Trainer, TrainState, state_dict_cpu

    p, t = cfg.prune, cfg.train
    card, index = inputs.artifact.card, inputs.index
    num_classes = len(card.classes)
    device = select_device(t.device, dist)
    channels_last = True
    model = pruned.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    teacher = copy.deepcopy(unpruned).to(device, memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
    base = CrossEntropy(label_smoothing=t.label_smoothing)
    recovery = "none" if p.epochs == 0 else ("distill" if p.distill else "cross_entropy")
    loss: Any = DistillationLoss(teacher, p.temperature, p.alpha, base=base) if p.distill else base

    state, saved = TrainState(), None
    last_path = out_dir / LAST_NAME
    if resume and last_path.is_file():
        saved = _load_last(last_path)
        if saved.get("input_hash") != input_hash:
            raise ConfigError(f"{last_path} was written with another config or model; cannot resume from it",
                              hint="rerun with the original settings, or drop --resume to start over")
        model.load_state_dict(saved["model"])
        state = TrainState.from_dict(saved["state"])
        log.info("resuming recovery from %s after epoch %d", last_path, state.epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    if saved is None:  # a fresh run: nothing of an older run may look like this run's result
        for name in (MANIFEST_NAME, LAST_NAME, MODEL_NAME, METRICS_NAME):
            (out_dir / name).unlink(missing_ok=True)

    preprocess = inputs.preprocess
    torch.manual_seed(p.seed)
    loader, generator = train_loader(cfg, inputs.task, index.splits["train"], preprocess, dist, device, p.seed)
    val_loader = eval_loader(cfg, inputs.task, index.splits["val"], preprocess, dist, device)
    test_loader = (eval_loader(cfg, inputs.task, index.splits["test"], preprocess, dist, device)
                   if index.eval_split == "test" else None)
    trainer = Trainer(model, loss=loss, device=device, dist=dist, amp=autocast_dtype_for(device, t.amp, t.cpu_bf16),
                      channels_last=channels_last, max_steps=p.max_steps_per_epoch, seed=p.seed,
                      patience=t.patience, early_stop_phases=("recover",))
    spec = get_backbone(card.backbone)

    def groups(m: nn.Module) -> list[dict[str, Any]]:
        for param in m.parameters():
            param.requires_grad_(True)
        return param_groups(m, spec, head_lr=p.lr, backbone_lr=p.lr, weight_decay=p.weight_decay)

    # BatchNorm trains with the rest: pruning changed what every layer sees, its statistics must follow
    phase = Phase("recover", p.epochs, groups, warmup_ratio=p.warmup_ratio, norm_stats="batch")

    with TrainProgress() as progress:
        def judge(judged: nn.Module, epoch: int) -> Judgement:
            val = evaluate(judged, val_loader, num_classes, device, dist=dist, channels_last=channels_last,
                           progress=progress.bar(f"  recovery epoch {epoch} val", len(val_loader)))
            return Judgement(val, (val.accuracy, -val.loss))

        unpruned_val = evaluate(teacher, val_loader, num_classes, device, dist=dist, channels_last=channels_last,
                                progress=progress.bar("  unpruned val", len(val_loader))).accuracy
        if saved is None:
            trainer.judge_start(state, judge)
            trainer.best_kept = state_dict_cpu(model)
            log.info("pruned, before recovery: val top-1 %.2f%% (unpruned %.2f%%)",
                     100 * state.history[-1]["val_accuracy"], 100 * unpruned_val)
        else:
            trainer.best_kept = saved["best_state"]

        def on_epoch_end(state: TrainState, row: dict[str, Any], improved: bool, run: Any) -> None:
            log.info("recovery epoch %d/%d (%s): train loss %.3f acc %.2f%% | val loss %.3f acc %.2f%%%s | %.0f s",
                     row["epoch"], p.epochs, recovery, row["train_loss"], 100 * row["train_accuracy"],
                     row["val_loss"], 100 * row["val_accuracy"], " (best)" if improved else "", row["time_s"])
            payload = {"input_hash": input_hash, "phase": "recover", "state": state.as_dict(),
                       "model": state_dict_cpu(model), "best_state": trainer.best_kept, **run.state()}
            with atomic_path(last_path) as tmp:
                torch.save(payload, tmp)

        trainer.fit([phase], loader, state, Callbacks(judge=judge, on_epoch_end=on_epoch_end), progress=progress,
                    resume_extra=saved, generator=generator)
        model.load_state_dict(trainer.best_kept)
        unpruned_eval, eval_accuracy = unpruned_val, state.best_val_accuracy
        if test_loader is not None:
            unpruned_eval = evaluate(teacher, test_loader, num_classes, device, dist=dist,
                                     channels_last=channels_last).accuracy
            eval_accuracy = evaluate(model, test_loader, num_classes, device, dist=dist,
                                     channels_last=channels_last).accuracy
    history = _History(state, recovery, unpruned_val, unpruned_eval, index.eval_split, eval_accuracy)
    return model.to("cpu").eval(), history


def _load_last(path: Path) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors: a truncated or foreign file
        raise ModelFileError(f"{path} is corrupt or truncated: {exc}",
                             hint="delete it, or drop --resume to start over") from exc
    if not isinstance(payload, dict) or "model" not in payload:
        raise ModelFileError(f"{path} is not a prune-stage resume checkpoint")
    return payload


def _finish(cfg: BuildConfig, target: TargetProfile, inputs: Any, model: nn.Module, report: PruneReport,
            history: _History, out_dir: Path, input_hash: str, started: float) -> PruneStageResult:
    """The artifact, metrics and manifest (written last: until then the stage has no result); last.pt goes."""
    from edgetl.artifacts import Lineage, save_module
    from edgetl.compress import count_macs_params

    source, card = inputs.artifact, inputs.artifact.card
    state = history.state
    save_module(model, out_dir / MODEL_NAME)
    example = inputs.task.example_inputs(card.io, 1)
    macs, params = count_macs_params(model, next(iter(example.values())) if len(example) == 1 else example)
    wall = round(time.perf_counter() - started, 2)
    summary = {
        "recovery": history.recovery, "epochs_run": state.epoch, "best_epoch": state.best_epoch,
        "unpruned_val_accuracy": history.unpruned_val, "pruned_val_accuracy": state.history[0]["val_accuracy"],
        "best_val_accuracy": state.best_val_accuracy, "eval_split": history.eval_split,
        "unpruned_eval_accuracy": history.unpruned_eval, "eval_accuracy": history.eval_accuracy,
        "stopped_early": state.stopped_early, "wall_time_s": wall,
    }
    write_json(out_dir / METRICS_NAME, {**summary, "epochs": state.history, "prune": report.model_dump(mode="json")})
    new_card = card.model_copy(update={
        "name": "pruned", "file": MODEL_NAME, "kind": "module",
        "lineage": Lineage(stage=STAGE, method="prune", parent=source.ref, parent_manifest=source.manifest.hash),
        "data_split": str(Path("..") / source.stage_dir.name / card.data_split) if card.data_split else None,
        "macs": macs, "params": params,
        "metrics": {"eval_split": history.eval_split, "eval_accuracy": history.eval_accuracy,
                    "best_val_accuracy": state.best_val_accuracy, "recovery": history.recovery},
    })
    p = cfg.prune
    Manifest(
        stage=STAGE,
        input_hash=input_hash,
        config={"prune": p.model_dump(mode="json"), "target": target.name},
        inputs={f"{source.stage_dir.name}/manifest.json": source.manifest.hash},
        outputs=hash_outputs(out_dir, [MODEL_NAME, METRICS_NAME]),
        info={
            "models": [new_card.model_dump(mode="json")],
            "source": source.ref, "backbone": card.backbone, "classes": list(card.classes),
            "preprocess": dict(card.preprocess), "prune": report.model_dump(mode="json"),
            "macs_fraction": report.macs_fraction, "params_fraction": report.params_fraction,
            "distillation": {"teacher": source.ref, "temperature": p.temperature, "alpha": p.alpha}
            if history.recovery == "distill" else None,
            **summary,
        },
    ).write(out_dir)
    (out_dir / LAST_NAME).unlink(missing_ok=True)
    log.info("recovered (%s): val top-1 %.2f%% at epoch %d (pruned %.2f%%, unpruned %.2f%%)", history.recovery,
             100 * state.best_val_accuracy, state.best_epoch, 100 * summary["pruned_val_accuracy"],
             100 * history.unpruned_val)
    return PruneStageResult(
        out_dir=out_dir, model_path=out_dir / MODEL_NAME, report=report, recovery=history.recovery,
        unpruned_val=history.unpruned_val, pruned_val=summary["pruned_val_accuracy"],
        best_val=state.best_val_accuracy, best_epoch=state.best_epoch, epochs_run=state.epoch,
        eval_split=history.eval_split, unpruned_eval=history.unpruned_eval, eval_accuracy=history.eval_accuracy,
        wall_time_s=wall,
    )
