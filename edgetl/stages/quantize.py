"""Stage ``quantize``: quantization-aware training to int8 (torchao PT2E) through the one trainer, and a PTQ baseline.

Input: the current float model artifact (``edgetl.artifacts``), whichever stage made it (fine-tuning, pruning, ...),
and the data split its card names. QAT: ``torch.export`` (the artifact's dynamic axes) -> ``prepare_qat_pt2e``
with edgetl's own quantizer (``edgetl.quant``: uint8 activations, int8 per-channel weights, BatchNorm folded) ->
a few epochs at a low learning rate in ``edgetl.training.Trainer`` (the fine-tuning augmentation, CUDA and mixed
precision when present) -> ``convert_pt2e``. PTQ: the same quantizer, ``prepare_pt2e``, calibration, ``convert_pt2e``.

Both converted models are saved as ``torch.export`` programs (``qat.pt2``, ``ptq.pt2``) with their model cards
(precision plan: int8, and the layers kept in float). The export stage turns them into ONNX QDQ and OpenVINO IR.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError
from edgetl.fsutil import atomic_dir, sha256_json, write_json
from edgetl.manifest import Manifest, hash_outputs, library_versions
from edgetl.targets import TargetProfile

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from edgetl.artifacts import ModelArtifact
    from edgetl.data import DatasetIndex
    from edgetl.tasks import Task
    from edgetl.tasks.base import EvalBatch
    from edgetl.training.loop import EpochStats

log = logging.getLogger("edgetl.quantize")

STAGE = "quantize"
PROGRAMS = {"qat": "qat.pt2", "ptq": "ptq.pt2"}
# where the int8 accuracies in metrics.json were scored, by quantize.qat_judge
INT8_SCORED_IN = {"onnxruntime": "onnxruntime int8 kernels (the exported QDQ model)",
                  "torch": "torch reference quantized ops"}
FLOAT_WEIGHTS = "_float_weights"  # report key of the layers' float weights (fallback only; never written)
FLOAT_BIASES = "_float_biases"  # ... and of their biases before bias correction (fallback only; never written)


@dataclass
class FloatInputs:
    """The float model artifact to quantize, with its task and data split."""

    artifact: ModelArtifact
    task: Task
    index: DatasetIndex

    @property
    def preprocess(self) -> dict[str, Any]:
        return dict(self.artifact.card.preprocess)

    @property
    def eval_samples(self) -> list[Any]:
        return list(self.index.splits[self.index.eval_split])


def read_float_model(model_dir: Path) -> FloatInputs:
    """The float model artifact of a stage directory (train/, prune/, ...), its task and its data split.

    A modified or missing file is a ``ModelFileError`` (checked against the stage's manifest).
    """
    from edgetl.artifacts import read_model_artifact
    from edgetl.data import read_split
    from edgetl.errors import ModelFileError
    from edgetl.tasks import get_task

    artifact = read_model_artifact(Path(model_dir))
    split = artifact.split_path
    if split is None or not split.is_file():
        raise ModelFileError(f"{model_dir}: the model card names no data split ({artifact.card.data_split})",
                             hint="rerun the stage that made the model")
    return FloatInputs(artifact, get_task(artifact.card.task), read_split(split))


@dataclass
class QuantizeResult:
    """What ``quantize`` produced; the files are listed in ``out_dir/manifest.json``."""

    out_dir: Path
    programs: dict[str, Path]  # "qat" / "ptq" -> the .pt2 file
    accuracy: dict[str, float]  # "fp32" / "ptq" / "qat" -> top-1 on the evaluation split (int8: INT8_SCORED_IN)
    eval_split: str
    kept_float: list[dict[str, str]] = field(default_factory=list)
    wall_time_s: dict[str, float] = field(default_factory=dict)


def input_hash(cfg: BuildConfig, source: Manifest, target: TargetProfile | None = None) -> str:
    key: dict[str, Any] = {"train": source.hash, "quantize": cfg.quantize.model_dump(mode="json"),
                           "versions": library_versions()}
    q = cfg.quantize
    if target is not None and q.qat and (q.skip_qat_within_budget or q.qat_stop_within_budget):
        key["max_accuracy_drop"] = target.budgets.max_accuracy_drop  # decides whether QAT runs, and when it stops
    return sha256_json(key)


def budget_floor(target: TargetProfile, fp32_val: float) -> float | None:
    """The lowest int8 top-1 on val within the target's int8 accuracy-drop budget: fp32's less the budget (None: the
    target states no ``max_accuracy_drop``). The one budget test of QAT's skip and of its stop."""
    budget = target.budgets.max_accuracy_drop
    return None if budget is None else fp32_val - budget / 100 - 1e-9  # the float error of two accuracies


def qat_skip_reason(cfg: BuildConfig, target: TargetProfile, fp32_val: float, ptq_val: float) -> str | None:
    """Why QAT need not run, or None: PTQ's top-1 on val is within the target's int8 accuracy-drop budget.

    Judged on the validation split only (the split QAT would select its epoch on), never on test. A target
    without a ``max_accuracy_drop`` budget, ``quantize.skip_qat_within_budget: false`` or no PTQ baseline: None.
    """
    q, floor = cfg.quantize, budget_floor(target, fp32_val)
    if not (q.qat and q.ptq_baseline and q.skip_qat_within_budget) or floor is None or ptq_val < floor:
        return None
    drop = 100 * (fp32_val - ptq_val)
    return (f"PTQ int8 is within target {target.name}'s accuracy-drop budget on val "
            f"({100 * ptq_val:.2f}% vs fp32 {100 * fp32_val:.2f}%: drop {drop:.2f} <= "
            f"{target.budgets.max_accuracy_drop:g} points)")


def qat_stop_accuracy(cfg: BuildConfig, target: TargetProfile, fp32_val: float) -> float | None:
    """The val top-1 at which QAT stops after a trained epoch (``quantize.qat_stop_within_budget``): the budget's
    floor (``budget_floor``). None: QAT runs all its epochs (the option is off, or the target states no
    ``max_accuracy_drop``)."""
    return budget_floor(target, fp32_val) if cfg.quantize.qat_stop_within_budget else None


# --------------------------------------------------------------------------------------------- data and evaluation
def _calibration_batches(cfg: BuildConfig, inputs: FloatInputs) -> list[dict[str, torch.Tensor]]:
    """``calibration_images`` training samples (a seeded sample), with the deployment preprocessing; the
    deployment-domain images instead when the float model was adapted to them (the ``adapt`` stage)."""
    import torch

    from edgetl.stages.adapt import adaptation_samples

    adapted = adaptation_samples(inputs.artifact.stage_dir, dict(inputs.artifact.card.metrics or {}))
    samples = adapted if adapted is not None else list(inputs.index.splits["train"])
    random.Random(cfg.quantize.seed).shuffle(samples)
    chunk = samples[: cfg.quantize.calibration_images]
    return [{k: torch.from_numpy(v) for k, v in x.items()}
            for x, _ in inputs.task.eval_batches(chunk, inputs.preprocess, cfg.train.batch_size)]


def torch_eval(model: Any, batches: list[EvalBatch], progress: Any = None) -> EpochStats:
    """Cross-entropy (no smoothing) and top-1 of a torch model (eager or exported graph) on preprocessed (named
    inputs, labels) batches."""
    import torch
    import torch.nn.functional as F

    from edgetl.training.loop import EpochStats

    correct = total = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for i, (inputs, labels) in enumerate(batches):
            logits = model(*[torch.from_numpy(v) for v in inputs.values()]).float()
            loss_sum += float(F.cross_entropy(logits, torch.from_numpy(labels).long(), reduction="sum"))
            correct += int((logits.argmax(1).numpy() == labels).sum())
            total += len(labels)
            if progress is not None:
                progress(i + 1, loss_sum / total, correct / total)
    return EpochStats(loss=loss_sum / max(1, total), accuracy=correct / max(1, total), count=total)


def torch_accuracy(model: Any, batches: list[EvalBatch], progress: Any = None) -> float:
    """Top-1 accuracy of a torch model (eager or exported graph) on preprocessed (named inputs, labels) batches."""
    return torch_eval(model, batches, progress).accuracy


def int8_logits(cfg: BuildConfig, example: Any, io: Any,
                opset: int) -> Callable[[Any, list[EvalBatch]], list[Any]] | None:
    """Where ``quantize.qat_judge`` scores int8: a function giving the per-batch logits of a converted int8 model
    from its QDQ export (``opset``) in ONNX Runtime's int8 kernels (what ships; ``INT8_SCORED_IN``), or None for
    torch's reference quantized ops."""
    from edgetl.quant.judge import ort_logits

    if cfg.quantize.qat_judge == "onnxruntime":
        return lambda model, batches: ort_logits(model, example, io, batches, opset=opset)
    return None


def int8_eval(cfg: BuildConfig, converted: Any, batches: list[EvalBatch], example: Any, io: Any,
              opset: int) -> EpochStats:
    """Loss and top-1 of a converted int8 model where ``quantize.qat_judge`` scores int8 (``int8_logits``). The one
    scorer of the PTQ model, the QAT candidates and the kept model on the evaluation split."""
    return int8_scores(cfg, converted, [batches], example, io, opset)[0]


def int8_scores(cfg: BuildConfig, converted: Any, splits: list[list[EvalBatch]], example: Any, io: Any,
                opset: int) -> list[EpochStats]:
    """``int8_eval`` of one converted int8 model on several splits, from one export where ONNX Runtime scores."""
    from edgetl.quant.judge import logits_stats
    from edgetl.training.loop import EpochStats

    score = int8_logits(cfg, example, io, opset)
    if score is None:
        return [torch_eval(converted, batches) for batches in splits]
    logits = score(converted, [batch for batches in splits for batch in batches])
    out, start = [], 0
    for batches in splits:
        loss, acc = logits_stats(logits[start:start + len(batches)], batches)
        out.append(EpochStats(loss=loss, accuracy=acc, count=sum(len(labels) for _, labels in batches)))
        start += len(batches)
    return out


def _split_batches(inputs: FloatInputs, split: str, batch_size: int) -> list[EvalBatch]:
    return list(inputs.task.eval_batches(inputs.index.splits[split], inputs.preprocess, batch_size))


# --------------------------------------------------------------------------------------------- PTQ and QAT
def resolve_weight_range(cfg: BuildConfig, target: TargetProfile) -> tuple[str, str]:
    """``quantize.weight_range`` made concrete for this build: ("full" | "reduced", why)."""
    from edgetl.bench.plan import host_is_target
    from edgetl.host import u8s8_saturates

    chosen = cfg.quantize.weight_range
    if chosen != "auto":
        return chosen, "quantize.weight_range"
    if host_is_target(target) and u8s8_saturates():
        return "reduced", (f"auto: target {target.name} runs on this host, an x86 CPU without VNNI/AMX, whose u8 x s8 "
                           "int8 kernels saturate at full range")
    return "full", "auto: " + ("the host has VNNI/AMX" if host_is_target(target) else
                               f"target {target.name} is not this host")


def _quantizer(cfg: BuildConfig, qat: bool) -> Any:
    from edgetl.quant import QuantizerOptions, make_quantizer

    q = cfg.quantize
    return make_quantizer(QuantizerOptions(qat=qat, keep_first_fp=q.keep_first_fp, keep_last_fp=q.keep_last_fp,
                                           weight_max=63 if q.weight_range == "reduced" else 127))


def _capture(model: torch.nn.Module, example: Any, io: Any, what: str) -> Any:
    from edgetl.quant.pt2e import capture

    return capture(model, example, stage=STAGE, what=what, io=io).module()


def run_ptq(cfg: BuildConfig, model: torch.nn.Module, example: Any, calibration: list[dict[str, torch.Tensor]],
            io: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Post-training quantization: observers on the exported graph, a calibration pass, ``convert_pt2e``.

    With the accuracy fallback on, the report carries the layers' float weights (``FLOAT_WEIGHTS``, popped by the
    stage before the report is written).
    """
    import torch
    from rich.progress import Progress
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgetl.quant.mixed import float_weights

    clock = _Clock()
    quantizer = _quantizer(cfg, qat=False)
    prepared = prepare_pt2e(_capture(model, example, io, "the float model"), quantizer)
    clock.lap("prepare_s")
    with Progress(transient=True) as progress, torch.inference_mode():
        task = progress.add_task("PTQ calibration", total=len(calibration))
        for batch in calibration:
            prepared(*batch.values())
            progress.advance(task)
    clock.lap("calibration_s")
    report: dict[str, Any] = {"calibration_images": sum(len(next(iter(b.values()))) for b in calibration)}
    q = cfg.quantize
    weights = float_weights(prepared) if q.fallback.enabled or q.bias_correction else None
    if q.fallback.enabled:
        report[FLOAT_WEIGHTS] = weights
    converted = convert_pt2e(prepared)
    clock.lap("convert_s")
    if q.bias_correction and weights is not None:
        from edgetl.quant.bias import correct_biases, layer_biases

        if q.fallback.enabled:
            report[FLOAT_BIASES] = layer_biases(converted, set(weights))

        subset: list[tuple[torch.Tensor, ...]] = []
        wanted = q.bias_correction_images or q.calibration_images
        left = wanted  # the leading images of the (shuffled) calibration sample
        for batch in calibration:
            if left <= 0:
                break
            subset.append(tuple(v[:left] for v in batch.values()))
            left -= len(subset[-1][0])
        converted, report["bias_correction"] = correct_biases(converted, weights, subset)
        report["bias_correction"]["images"] = wanted - max(left, 0)
        clock.lap("bias_correction_s")
    return converted, quantizer, {**report, "timings": clock.laps}


class _Clock:
    """Wall seconds between laps, by name (repeated names add up): where a stage's time goes, for metrics.json."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        seconds = now - self._last
        self.laps[name] = round(self.laps.get(name, 0.0) + seconds, 2)
        self._last = now
        return seconds


def run_qat(cfg: BuildConfig, inputs: FloatInputs, model: torch.nn.Module, example: Any,
            calibration: list[dict[str, torch.Tensor]], val_batches: list[EvalBatch],
            io: Any = None, dist: Any = None, opset: int = 20,
            stop_at: float | None = None,
            eval_batches: list[EvalBatch] | None = None,
            start: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """QAT: range initialisation on ``calibration``, a few epochs of fake-quantized training from the float
    weights (BatchNorm folded with its running statistics, frozen by default) in the shared trainer, then
    ``convert_pt2e``.

    Like fine-tuning, QAT keeps its best weights on the validation split (``val_batches``; never the test split):
    a converted copy is judged after range initialisation (epoch 0, no training yet) and after every epoch; the
    best (the later one at equal accuracy) is returned with the quantizer and a report of the history. With
    ``stop_at`` (``qat_stop_accuracy``) QAT stops after the first trained epoch whose candidate reaches it on val.
    ``eval_batches`` (a test split): each candidate is scored on it in the same export as on val, so the kept one's
    figure needs no export of its own (``kept_eval_accuracy``); only val selects.
    ``quantize.qat_judge`` says where a candidate runs: its ONNX QDQ export (``opset``) in ONNX Runtime's int8
    kernels, or torch's reference quantized ops.
    ``start`` (a ``Judgement`` of the stage's PTQ model, already scored): epoch 0 is that model, not a conversion of
    its own. QAT's range initialisation is PTQ's calibration on the same images, so its untrained candidate is the
    PTQ model again (without PTQ's bias correction); converting, exporting and scoring it a second time costs a
    judging and selects nothing new. Measured on the digits demo model (val): QAT's own epoch 0 88.02 %, the
    uncorrected PTQ model 88.58 %.
    Under ``torchrun`` (``dist``) every process trains its shard of the data (DistributedDataParallel through
    the trainer) and judges the same, synchronised model.
    """
    import torch
    from torchao.quantization.pt2e import (
        disable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from edgetl.quant.mixed import float_weights
    from edgetl.quant.pt2e import freeze_batchnorm_stats, match_qat_batchnorm_eps
    from edgetl.quant.quantizer import calibrate_qat_ranges
    from edgetl.stages.finetune import select_device, train_loader
    from edgetl.training.distributed import DistContext
    from edgetl.training.loop import autocast_dtype_for
    from edgetl.training.losses import CrossEntropy
    from edgetl.training.progress import TrainProgress
    from edgetl.training.trainer import Callbacks, Judgement, Phase, Trainer, TrainState

    q = cfg.quantize
    dist = dist or DistContext()
    device = select_device(cfg.train.device, dist)
    torch.manual_seed(q.seed)
    loader, generator = train_loader(cfg, inputs.task, inputs.index.splits["train"], inputs.preprocess, dist, device,
                                     q.seed)
    clock = _Clock()
    judge_s: list[float] = []
    quantizer = _quantizer(cfg, qat=True)
    match_qat_batchnorm_eps(model)
    prepared = prepare_qat_pt2e(_capture(model, example, io, "the float model"), quantizer)
    clock.lap("prepare_s")
    # Range initialisation: activation ranges from PTQ's histogram calibration on the same images (deployment
    # preprocessing), fixed from then on, so QAT starts from the PTQ model and the weights learn the int8 grid.
    move_exported_model_to_eval(prepared)
    calibrate_qat_ranges(prepared, [tuple(b.values()) for b in calibration])
    prepared = prepared.to(device)
    clock.lap("range_init_s")
    val_images = sum(len(labels) for _, labels in val_batches)

    def judge(trained: Any, epoch: int) -> Judgement:
        # the converted int8 model is what ships; the fake-quant graph can differ from it by a point or more
        # (measured on digits), so each candidate is converted (a copy, on the CPU) and judged as converted
        started = time.perf_counter()
        candidate = copy.deepcopy(trained).to("cpu")
        candidate.apply(disable_observer)
        move_exported_model_to_eval(candidate)
        weights = float_weights(candidate) if q.fallback.enabled else None
        converted = convert_pt2e(candidate)
        # with the val loss for the curves; the test split beside it is recorded, never compared
        stats, *tested = int8_scores(cfg, converted, [val_batches, *([eval_batches] if eval_batches else [])],
                                     example, io, opset)
        judge_s.append(round(time.perf_counter() - started, 2))
        return Judgement(stats, (stats.accuracy,), keep=(converted, weights, tested[0].accuracy if tested else None))

    steps_per_epoch = min(len(loader), q.max_steps_per_epoch or len(loader))
    freeze_bn_step = int(q.freeze_bn_at * q.qat_epochs * steps_per_epoch)

    def before_step(step: int) -> None:
        if step >= freeze_bn_step:
            freeze_batchnorm_stats(prepared)  # a no-op once frozen

    trainer = Trainer(prepared, loss=CrossEntropy(label_smoothing=cfg.train.label_smoothing), device=device,
                      dist=dist, amp=autocast_dtype_for(device, cfg.train.amp), max_steps=q.max_steps_per_epoch,
                      seed=q.seed, prefer_later=True)
    # no warm-up: the weights are already trained; decay to 0 so the last steps barely move the frozen grid
    phase = Phase("qat", q.qat_epochs, lambda m: [{"params": list(m.parameters()), "lr": q.qat_lr,
                                                   "weight_decay": 0.0, "name": "head"}],
                  warmup_ratio=0.0, train_mode=move_exported_model_to_train, norm_stats="batch")
    state = TrainState()
    if start is None:
        trainer.judge_start(state, judge)
        log.info("QAT epoch 0 (PTQ ranges, no training yet): val top-1 %.2f%%",
                 100 * state.history[-1]["val_accuracy"])
    else:
        trainer.judge_start(state, lambda trained, epoch: start)
        judge_s.append(0.0)
        log.info("QAT epoch 0 is the PTQ model (val top-1 %.2f%%, scored once)", 100 * start.stats.accuracy)

    def on_epoch_end(state: TrainState, row: dict[str, Any], improved: bool, run: Any) -> None:
        log.info("QAT epoch %d/%d: train loss %.3f acc %.2f%% | val top-1 %.2f%% (%d steps, BatchNorm %s)",
                 row["epoch"], q.qat_epochs, row["train_loss"], 100 * row["train_accuracy"],
                 100 * row["val_accuracy"], steps_per_epoch,
                 "frozen" if row["epoch"] * steps_per_epoch > freeze_bn_step else "live")
        if stop_at is not None and row["val_accuracy"] >= stop_at and row["epoch"] < q.qat_epochs:
            state.stopped_early = True  # the trainer's loop ends here: this candidate is within the budget
            log.info("QAT stops after epoch %d: val top-1 %.2f%% is within the accuracy-drop budget of fp32 "
                     "(quantize.qat_stop_within_budget)", row["epoch"], 100 * row["val_accuracy"])

    with TrainProgress(enabled=dist.is_main) as progress:
        trainer.fit([phase], loader, state, Callbacks(judge=judge, on_epoch_end=on_epoch_end,
                                                      before_step=before_step),
                    progress=progress, generator=generator)
    log.info("QAT keeps epoch %d (val top-1 %.2f%%)", state.best_epoch, 100 * state.best_val_accuracy)
    history = [{"epoch": h["epoch"], "train_loss": h["train_loss"], "train_accuracy": h["train_accuracy"],
                "val_loss": h["val_loss"], "val_accuracy": h["val_accuracy"]} for h in state.history]
    clock.lap("epochs_s")
    # judge_s: epoch 0 first; epochs_s: from the start of fit to its end, every judging included
    timings = {**clock.laps, "judge_s": judge_s,
               "train_s": [round(h["time_s"] - j, 2) for h, j in zip(state.history[1:], judge_s[1:], strict=False)]}
    report = {"epochs": q.qat_epochs, "lr": q.qat_lr, "judge": q.qat_judge, "steps_per_epoch": steps_per_epoch,
              "device": str(device), "world_size": dist.world_size,
              "kept_epoch": state.best_epoch, "kept_val_accuracy": state.best_val_accuracy,
              "stop_at_val_accuracy": stop_at, "stopped_after_epoch": state.epoch if state.stopped_early else None,
              "epoch_0": "the PTQ model" if start is not None else "converted after range initialisation",
              "val_images": val_images, "history": history, "timings": timings}
    converted, weights, report["kept_eval_accuracy"] = trainer.best_kept
    if weights is not None:
        report[FLOAT_WEIGHTS] = weights
    return converted, quantizer, report


def _check_fallback_target(target: TargetProfile) -> None:
    """Stop before any work where the accuracy fallback cannot be used (no budget, a runtime without fp32)."""
    from edgetl.quant.mixed import check_mixed_precision
    from edgetl.runtimes import RUNTIMES

    where = f"target {target.name} ({target.source or 'built in'})"
    if target.budgets.max_accuracy_drop is None:
        raise ConfigError(f"quantize.fallback is on but {where} states no budgets.max_accuracy_drop to reach",
                          hint="add budgets.max_accuracy_drop to the target profile, or turn the fallback off")
    caps = {}
    for spec in target.runtimes:
        caps[(spec.runtime, spec.device)] = RUNTIMES.get(spec.runtime).capabilities.get(spec.device, frozenset())
    check_mixed_precision([(s.runtime, s.device, tuple(s.precisions)) for s in target.runtimes], caps, where)


def _accuracy_fallback(cfg: BuildConfig, target: TargetProfile, name: str, converted: Any, weights: Any,
                       model: Any, val_batches: list[EvalBatch], reports: dict[str, dict[str, Any]],
                       example: Any, io: Any, opset: int, biases: Any = None) -> tuple[Any, list[dict[str, str]]]:
    """Revert the most sensitive layers of ``converted`` to float until the target's budget holds on val
    (``biases``: the layers' biases before bias correction, which a reverted layer takes back)."""
    from edgetl.quant.judge import StepLatency
    from edgetl.quant.mixed import accuracy_aware

    fb = cfg.quantize.fallback
    budget = float(target.budgets.max_accuracy_drop or 0.0)
    # each step's latency in ONNX Runtime for the report's step curve and max_latency_increase (measured only
    # once the loop reverts a layer: the sessions are made on the first call)
    latency = StepLatency(model, converted, example, io, val_batches[0][0], opset=opset,
                          threads=cfg.train.threads or 1)
    try:
        shipped, chosen, report = accuracy_aware(converted, weights, model, val_batches, budget,
                                                 fb.max_float_layers, "quantize.fallback", log,
                                                 rank_images=fb.rank_images, confirm_layers=fb.confirm_layers,
                                                 latency=latency, max_latency_increase=fb.max_latency_increase,
                                                 # every step decided where int8 is scored (quantize.qat_judge)
                                                 int8_logits=int8_logits(cfg, example, io, opset),
                                                 scored_in=INT8_SCORED_IN[cfg.quantize.qat_judge], biases=biases)
    finally:
        latency.close()
    reports[name] = report
    steps = {tuple(s["float_layers"]): i for i, s in enumerate(report["steps"])}
    k = steps.get(tuple(la.name for la in chosen), len(chosen))
    report["shipped_val_accuracy"] = report["steps"][k]["accuracy"]  # the shipped step's top-1 on val
    reason = (f"accuracy fallback (step {k} of {len(report['steps']) - 1}: val drop "
              f"{report['steps'][k]['drop_points']:.2f} points, budget {budget:g})")
    return shipped, [{"layer": la.name, "kind": la.kind, "reason": reason} for la in chosen]


def _scratch(tempfile: Any) -> Any:
    return tempfile.TemporaryDirectory(prefix="edgetl-quantize-rank-")


# --------------------------------------------------------------------------------------------- the stage
def quantize(cfg: BuildConfig, target: TargetProfile, model_dir: Path, out_dir: Path) -> QuantizeResult:
    """Quantize the float model artifact in ``model_dir`` to int8 (QAT and/or PTQ) into ``out_dir``.

    Args:
        cfg: the build config; reads ``cfg.quantize`` (and ``cfg.train`` for batch size and augmentation).
        target: the target profile (recorded; quantization itself is target-independent).
        model_dir: the stage directory of the float model: ``train/``, or any later stage that made one.
        out_dir: where ``qat.pt2``, ``ptq.pt2``, ``metrics.json`` and ``manifest.json`` go (replaced whole).

    Returns:
        The program paths, accuracies (fp32 in torch; ptq / qat where ``quantize.qat_judge`` scores int8) on the
        evaluation split and wall times.
    """
    from edgetl.library_logs import quiet_library_logs

    quiet_library_logs()  # before torchao is imported: it logs the deprecation on import
    import torch

    from edgetl.training.distributed import barrier, init_distributed, shutdown

    q = cfg.quantize
    if not q.qat and not q.ptq_baseline:
        raise ConfigError("quantize: both qat and ptq_baseline are off, so there is nothing to produce",
                          hint="set quantize.qat or quantize.ptq_baseline to true")
    dist = init_distributed("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if cfg.train.threads is not None:  # the training process's threads, as in fine-tuning (QAT trains)
        torch.set_num_threads(cfg.train.threads)
    try:
        result = _quantize(cfg, target, Path(model_dir), Path(out_dir), dist)
        barrier(dist)
        return result
    finally:
        torch.set_num_threads(threads)
        shutdown(dist)


def _quantize(cfg: BuildConfig, target: TargetProfile, model_dir: Path, out_dir: Path, dist: Any) -> QuantizeResult:
    import tempfile

    from edgetl.artifacts import FloatLayer, Lineage, ModelCard, PrecisionPlan
    from edgetl.quant import count_quantized_layers
    from edgetl.quant.pt2e import save_program
    from edgetl.training.trainer import Judgement

    weight_range, weight_range_reason = resolve_weight_range(cfg, target)
    cfg = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"weight_range": weight_range})})
    if weight_range == "reduced":
        log.info("int8 weights -63..63 (%s)", weight_range_reason)
    q = cfg.quantize
    inputs = read_float_model(Path(model_dir))
    card, io = inputs.artifact.card, inputs.artifact.card.io
    model = inputs.artifact.load()
    example = inputs.task.example_inputs(io, 2)  # 2, not 1: torch.export specialises a dimension of size 1
    eval_batches = _split_batches(inputs, inputs.index.eval_split, cfg.train.batch_size)
    validating_on_eval = inputs.index.eval_split == "val"
    val_batches = eval_batches if validating_on_eval else _split_batches(inputs, "val", cfg.train.batch_size)
    opset = cfg.export.opset or target.export.opset

    def int8_accuracy(converted: Any, batches: list[EvalBatch]) -> float:
        return int8_eval(cfg, converted, batches, example, io, opset).accuracy

    started = time.perf_counter()
    accuracy = {"fp32": torch_accuracy(model, eval_batches)}
    # per int8 model, its top-1 on val where int8 is scored: the figure the deployed route is chosen on
    # (edgetl.bench.budgets.choose_int8_source), so that no choice is made on a held-out test split
    val_accuracy: dict[str, float] = {}
    timings: dict[str, Any] = {"fp32_eval_s": round(time.perf_counter() - started, 2)}
    walls: dict[str, float] = {}
    kept: list[dict[str, str]] = []
    layers: dict[str, dict[str, int]] = {}
    cards: list[ModelCard] = []
    fallbacks: dict[str, dict[str, Any]] = {}  # per int8 model: the accuracy fallback's report
    if q.fallback.enabled:
        _check_fallback_target(target)

    # only rank 0 writes the stage directory; the other processes of a torchrun write nowhere that lasts
    with (atomic_dir(out_dir) if dist.is_main else _scratch(tempfile)) as tmp:
        tmp = Path(tmp)
        programs: dict[str, Path] = {}
        runs: list[tuple[str, Any]] = []
        reports: dict[str, dict[str, Any]] = {}
        ptq_val_accuracy = 0.0
        calibration = _calibration_batches(cfg, inputs)  # PTQ's calibration and QAT's range initialisation
        if q.ptq_baseline:
            runs.append(("ptq", lambda: run_ptq(cfg, model, example, calibration, io)))
        if q.qat:
            # QAT trains a copy: the float model stays the PTQ and parity reference
            runs.append(("qat", lambda: run_qat(cfg, inputs, copy.deepcopy(model), example, calibration,
                                                val_batches, io, dist, opset,
                                                stop_at=qat_stop_accuracy(cfg, target, fp32_val()),
                                                eval_batches=None if validating_on_eval else eval_batches,
                                                start=ptq_start)))
        ptq_start: Judgement | None = None  # the PTQ model as QAT's epoch 0 (run_qat's ``start``)

        @functools.cache
        def fp32_val() -> float:  # fp32's top-1 on val, scored once and only when needed
            return accuracy["fp32"] if validating_on_eval else torch_accuracy(model, val_batches)

        for name, run in runs:
            if name == "qat" and "ptq" in accuracy:
                skip = qat_skip_reason(cfg, target, fp32_val(), ptq_val_accuracy)
                if skip:
                    log.info("QAT skipped: %s (quantize.skip_qat_within_budget)", skip)
                    reports["qat"] = {"skipped": skip}
                    continue
            start = time.perf_counter()
            converted, quantizer, report = run()
            weights = report.pop(FLOAT_WEIGHTS, None)
            biases = report.pop(FLOAT_BIASES, None)
            reverted: list[dict[str, str]] = []
            if q.fallback.enabled and weights is not None:
                converted, reverted = _accuracy_fallback(cfg, target, name, converted, weights, model, val_batches,
                                                         fallbacks, example, io, opset, biases)
            reports[name] = report
            trained = time.perf_counter()
            save_program(converted, example, tmp / PROGRAMS[name], stage=STAGE, model_io=io)
            walls[name] = round(time.perf_counter() - start, 2)
            timings[name] = {**report.pop("timings", {}), "total_s": walls[name],
                             "save_s": round(time.perf_counter() - trained, 2)}
            programs[name] = out_dir / PROGRAMS[name]
            # QAT already scored its kept model on the evaluation split, where int8_accuracy scores it (on val, or
            # on test beside val); score again only when the fallback changed the model
            kept_acc = report.get("kept_val_accuracy" if validating_on_eval else "kept_eval_accuracy") \
                if not reverted else None
            scoring = time.perf_counter()
            if kept_acc is not None:
                accuracy[name] = kept_acc
            elif name == "ptq":  # test and val (QAT's skip and epoch 0) from one export
                ptq_eval, ptq_val = (int8_scores(cfg, converted, [eval_batches, val_batches], example, io, opset)
                                     if not validating_on_eval else [int8_eval(cfg, converted, eval_batches,
                                                                               example, io, opset)] * 2)
                accuracy[name], ptq_val_accuracy = ptq_eval.accuracy, ptq_val.accuracy
                if not q.fallback.enabled:  # the fallback needs QAT's own float weights: QAT judges its epoch 0
                    ptq_start = Judgement(ptq_val, (ptq_val.accuracy,), keep=(
                        converted, None, None if validating_on_eval else ptq_eval.accuracy))
            else:
                accuracy[name] = int8_accuracy(converted, eval_batches)
            timings[name]["score_s"] = round(time.perf_counter() - scoring, 2)
            shipped_val = (fallbacks[name]["shipped_val_accuracy"] if reverted and name != "ptq"
                           else ptq_val_accuracy if name == "ptq" else report.get("kept_val_accuracy"))
            if shipped_val is not None:
                val_accuracy[name] = float(shipped_val)
            layers[name] = count_quantized_layers(converted)
            kept = list(quantizer.kept_float) + reverted
            cards.append(card.model_copy(update={
                "name": name, "file": PROGRAMS[name], "kind": "program",
                "precision_plan": PrecisionPlan(default="int8", float_layers=tuple(FloatLayer.model_validate(k) for k in kept)),
                "lineage": Lineage(stage=STAGE, method=name, parent=inputs.artifact.ref,
                                   parent_manifest=inputs.artifact.manifest.hash),
                "data_split": str(Path("..") / inputs.artifact.stage_dir.name / card.data_split)
                if card.data_split else None,
                "metrics": {"eval_split": inputs.index.eval_split, "eval_accuracy": accuracy[name],
                            **({"val_accuracy": val_accuracy[name]} if name in val_accuracy else {}),
                            **({"accuracy_fallback": {k: fallbacks[name][k] for k in ("status", "message")}}
                               if name in fallbacks else {})},
            }))
            log.info("%s: top-1 %.2f%% (fp32 %.2f%%), %d int8 layers, %.1fs", name, 100 * accuracy[name],
                     100 * accuracy["fp32"], layers[name]["int8"], walls[name])
        metrics = {
            "eval_split": inputs.index.eval_split, "eval_images": len(inputs.eval_samples),
            "accuracy": accuracy, "val_accuracy": val_accuracy, "int8_scored_in": INT8_SCORED_IN[q.qat_judge], "wall_time_s": walls, "timings": timings, "int8_layers": layers, "kept_float": kept,
            "qat": reports.get("qat", {}), "ptq": reports.get("ptq", {}),
            "calibration_images": q.calibration_images,
            "weight_range": {"range": weight_range, "reason": weight_range_reason},
            "calibration_source": "adaptation images" if (inputs.artifact.card.metrics or {}).get("adaptation")
            else "train",
            **({"fallback": fallbacks} if q.fallback.enabled else {}),
        }
        write_json(tmp / "metrics.json", metrics)
        names = [PROGRAMS[n] for n in programs] + ["metrics.json"]
        source = inputs.artifact.manifest
        Manifest(
            stage=STAGE,
            input_hash=input_hash(cfg, source, target),
            config={"quantize": q.model_dump(mode="json"), "target": target.name},
            inputs={f"{inputs.artifact.stage_dir.name}/manifest.json": source.hash},
            outputs=hash_outputs(tmp, names),
            info={
                "models": [c.model_dump(mode="json") for c in cards],
                "programs": {n: PROGRAMS[n] for n in programs},
                "backbone": card.backbone, "classes": list(card.classes),
                "preprocess": inputs.preprocess, "source_manifest": source.hash, "source": inputs.artifact.ref,
                "accuracy": accuracy, "eval_split": inputs.index.eval_split, "int8_layers": layers,
                "kept_float": kept, "quantizer": "edgetl.quant.EdgeQuantizer (u8 act, s8 per-channel weights, "
                f"{'-63..63' if q.weight_range == 'reduced' else '-127..127'})",
            },
        ).write(tmp)
    return QuantizeResult(out_dir=out_dir, programs=programs, accuracy=accuracy, eval_split=inputs.index.eval_split,
                          kept_float=kept, wall_time_s=walls)
