"""Stage ``train``: fine-tune a registered backbone on the task's data, through the one trainer.

Recipe: a head-only warm-up (backbone frozen, its BatchNorm statistics fixed), then fine-tuning of all layers (or
the last N blocks) with a lower learning rate for the pretrained layers; AdamW, per-step cosine schedule with
linear warm-up, label smoothing, the task's augmentation; early stopping on validation accuracy, keeping the best
weights. Validation uses the deployment preprocessing, so the accuracy stated is the accuracy a bundle delivers.

Output: ``model.pt``, a model artifact (``edgetl.artifacts``: the whole module, with its card in the manifest), plus
``labels.json``, ``split.json`` and ``metrics.json``. Every epoch ends with ``last.pt`` (weights, best weights,
optimizer, schedule, history; a state dict, loaded ``weights_only``) written atomically, so Ctrl-C loses at most
the running epoch and ``resume=True`` continues exactly where it stopped. Under ``torchrun`` each process trains on
its shard (DistributedDataParallel), metrics are summed over processes and only rank 0 writes files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.backbones import Checkpoint, create_model, get_backbone, load_checkpoint, save_checkpoint
from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, DataError, RuntimeUnavailableError
from edgetl.fsutil import sha256_file, sha256_json, write_json
from edgetl.manifest import MANIFEST_NAME, Manifest, hash_outputs, library_versions
from edgetl.targets import TargetProfile
from edgetl.training.distributed import DistContext, barrier, init_distributed, shutdown
from edgetl.training.trainer import TrainState, state_dict_cpu

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgetl.data import DatasetIndex
    from edgetl.tasks import ResolvedInput, Task

log = logging.getLogger("edgetl.train")

MODEL_NAME, LAST_NAME = "model.pt", "last.pt"
OUTPUTS = (MODEL_NAME, "labels.json", "split.json", "metrics.json")


@dataclass(frozen=True)
class TrainResult:
    """What ``finetune`` produced; the files themselves are listed in ``out_dir/manifest.json``."""

    out_dir: Path
    checkpoint: Path
    best_val_accuracy: float
    best_epoch: int  # 1-based, counting head warm-up epochs
    epochs_run: int
    wall_time_s: float
    eval_split: str
    eval_accuracy: float  # best weights on the evaluation split (test if the data has one, else val)
    stopped_early: bool
    # val against test top-1 (edgetl.stats.split_disagreement); None without a test split
    split_check: dict[str, Any] | None = None


def select_device(choice: str, dist: DistContext) -> torch.device:
    """The training device for ``train.device`` (auto: CUDA when present)."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeUnavailableError("train.device is 'cuda' but torch sees no CUDA device",
                                      hint="set train.device to 'auto' or 'cpu', or install a CUDA build of torch")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(dist.local_rank)
    return torch.device("cuda", dist.local_rank)


def _resolve_index(cfg: BuildConfig, task: Task, dist: DistContext) -> DatasetIndex:
    """Rank 0 indexes (and checks) the data once and shares it, or shares the error, with the other ranks."""
    if not dist.enabled:
        return task.index_data(cfg.data)
    import torch.distributed as tdist

    box: list[Any] = [None]
    if dist.is_main:
        try:
            box[0] = task.index_data(cfg.data)
        except DataError as exc:
            box[0] = exc
    tdist.broadcast_object_list(box, src=0)
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def train_loader(cfg: BuildConfig, task: Task, samples: list[Any], preprocess: dict[str, Any], dist: DistContext,
                 device: torch.device, seed: int) -> tuple[Any, torch.Generator]:
    """The training DataLoader (the task's augmentation), sharded under ``torchrun``; used by fine-tuning and QAT."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    from edgetl.data import loader_settings

    t = cfg.train
    data: Any = task.train_dataset(samples, preprocess, t)
    generator = torch.Generator().manual_seed(seed)
    if dist.enabled:
        sampler: Any = DistributedSampler(data, dist.world_size, dist.rank, shuffle=True, seed=seed)
    else:
        # the task's own order where it has one (texts of similar length together), else uniform
        sampler = (task.train_sampler(samples, preprocess, t.batch_size, seed)
                   or RandomSampler(data, generator=generator))
    per_rank = len(data) // dist.world_size
    common = {**loader_settings(cfg.data.num_workers), "pin_memory": device.type == "cuda", "generator": generator,
              "collate_fn": task.collate(preprocess)}
    if cfg.data.restart_workers and common.get("persistent_workers"):
        # workers seed their augmentation from the loader's generator when they start; started afresh each
        # epoch, from the generator the trainer reseeds per epoch, a resumed run draws what an uninterrupted one
        # draws (persistent workers carry their RNG state on from epoch 0)
        common["persistent_workers"] = False
    # a last batch of one or two images gives noisy BatchNorm statistics; drop it when there is more than a batch
    return DataLoader(data, batch_size=t.batch_size, sampler=sampler, drop_last=per_rank > t.batch_size,
                      **common), generator


def eval_loader(cfg: BuildConfig, task: Task, samples: list[Any], preprocess: dict[str, Any], dist: DistContext,
                device: torch.device) -> Any:
    """An evaluation DataLoader, each rank on its exact shard (no padding, no repeats)."""
    from torch.utils.data import DataLoader, Subset

    from edgetl.data import loader_settings

    data: Any = task.eval_dataset(samples, preprocess)
    shard = Subset(data, list(range(dist.rank, len(data), dist.world_size)))
    return DataLoader(shard, batch_size=cfg.train.batch_size * 2, shuffle=False, collate_fn=task.collate(preprocess),
                      pin_memory=device.type == "cuda", **loader_settings(cfg.data.num_workers))


def _loss(cfg: BuildConfig, index: DatasetIndex, device: torch.device, teacher: nn.Module | None = None) -> Any:
    import torch

    from edgetl.training.losses import CrossEntropy, DistillationLoss

    weight = None
    if cfg.train.balanced_loss:
        counts = torch.tensor(list(index.class_counts("train").values()), dtype=torch.float32)
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    base = CrossEntropy(label_smoothing=cfg.train.label_smoothing, weight=weight)
    if teacher is None:
        return base
    teacher = teacher.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    return DistillationLoss(teacher, cfg.train.teacher_temperature, cfg.train.teacher_alpha, base=base)


def _input_hash(cfg: BuildConfig, index: DatasetIndex, resolved: ResolvedInput) -> str:
    return sha256_json({
        "data": cfg.data.model_dump(mode="json", exclude={"num_workers"}),
        "train": cfg.train.model_dump(mode="json", exclude={"device", "threads"}),  # where, not what
        "dataset": index.fingerprint,
        "splits": sha256_json(index.splits),  # the split itself (a text index's fingerprint hashes only its files)
        "image_size": resolved.size,
        "versions": library_versions(),
    })


def finetune(cfg: BuildConfig, target: TargetProfile, out_dir: Path, *, resume: bool = False,
             stage: str = "train") -> TrainResult:
    """Fine-tune ``cfg.train.backbone`` on ``cfg.data`` and write the model artifact ``out_dir/model.pt``.

    Args:
        cfg: the build config (reads ``data`` and ``train``).
        target: the target profile (its input size is used unless ``train.image_size`` is set: ``resolve_input``).
        out_dir: the stage directory, usually ``OUT/train``.
        resume: continue from ``out_dir/last.pt`` if it exists (the same config and data are required).
        stage: the stage name the manifest and the model card's lineage carry (``student_alone`` trains the
            distilled student's config without its teacher through this same function).

    Returns:
        A ``TrainResult``. Raises ``KeyboardInterrupt`` after Ctrl-C, with ``last.pt`` holding the last full epoch.

    Example:
        >>> finetune(load_build_config().with_overrides({"data.path": "digits"}), load_target("cpu"), Path("runs/x/train"))
    """
    import torch

    spec = get_backbone(cfg.train.backbone)
    cfg = resolve_recipe(cfg, spec)  # the manifest, the model card and resume see the recipe that runs
    t = cfg.train
    if (t.head_epochs or 0) + t.epochs == 0:
        raise ConfigError("train.head_epochs and train.epochs are both 0: nothing to train",
                          hint="set --epochs or --head-epochs to at least 1")
    dist = init_distributed("cuda" if t.device != "cpu" and torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    try:
        return _run(cfg, target, Path(out_dir), spec, dist, resume, stage)
    except KeyboardInterrupt:
        if dist.is_main:
            last = Path(out_dir) / LAST_NAME
            log.warning("interrupted: %s", f"{last} holds the last finished epoch; rerun to continue from it"
                        if last.is_file() else "no epoch had finished, nothing to resume")
        raise
    finally:
        torch.set_num_threads(threads)
        shutdown(dist)


def _log_noise(split: str, accuracy: float, total: int) -> None:
    from edgetl.stats import accuracy_interval, is_noisy

    lo, hi = accuracy_interval(accuracy, total)
    if is_noisy(accuracy, total):
        log.warning("%s top-1 %.1f%% on %d image(s) is a noisy figure: 95%% binomial interval %.1f-%.1f%%", split,
                    100 * accuracy, total, 100 * lo, 100 * hi)


def _head(cfg: BuildConfig, train_counts: dict[str, int]) -> str:
    """``train.head`` resolved against the smallest class; a class without training images is an error."""
    from edgetl.training.fewshot import choose_head

    empty = [name for name, n in train_counts.items() if n == 0]
    if empty:
        raise DataError(f"class(es) {', '.join(empty)} have no training image (0 shots)",
                        hint="add at least one labelled image per class under train/, or remove the class folder")
    return choose_head(cfg.train.head, min(train_counts.values()))


def _labelled_batches(task: Task, index: DatasetIndex, preprocess: dict[str, Any], device: torch.device,
                      split: str = "train") -> Any:
    """A split's images with the deployment (eval) preprocessing, as (inputs, labels) tensor batches."""
    import torch

    for inputs, labels in task.eval_batches(index.splits[split], preprocess, 64):
        yield tuple(torch.from_numpy(v).to(device) for v in inputs.values()), torch.from_numpy(labels)


def resolve_recipe(cfg: BuildConfig, spec: Any) -> BuildConfig:
    """``cfg`` with ``train.strategy`` and ``train.head_epochs`` resolved.

    "auto" is "lp_ft" for an image backbone with pretrained weights (a checkpoint, or "default" where the spec's
    are pretrained) and "warmup_finetune" otherwise: random weights have no features for a probe to keep, and
    LP-FT was measured on images only. ``head_epochs`` None is the recipe's own (``edgetl.config.HEAD_EPOCHS``).

    Example:
        >>> resolve_recipe(BuildConfig(), get_backbone("efficientnet_lite0")).train.strategy
        'lp_ft'
    """
    from edgetl.config import HEAD_EPOCHS
    from edgetl.tasks import task_for_backbone

    t = cfg.train
    strategy = t.strategy
    pretrained = t.weights not in ("default", "none") or (t.weights == "default" and spec.pretrained)
    if strategy == "auto":
        image = task_for_backbone(spec).name == "image_classification"
        strategy = "lp_ft" if image and pretrained else "warmup_finetune"
    elif strategy == "lp_ft" and not pretrained:
        log.warning("train.strategy lp_ft with random weights (%s, weights %s): the probe fits a head to random "
                    "features and the fine-tune runs at lp_ft_lr; warmup_finetune (or auto) trains them faster",
                    spec.name, t.weights)
    head_epochs = HEAD_EPOCHS[strategy] if t.head_epochs is None else t.head_epochs
    return cfg.with_overrides({"train.strategy": strategy, "train.head_epochs": head_epochs})


def _phases(cfg: BuildConfig, spec: Any, steps: int, num_classes: int) -> list[Any]:
    """The fine-tuning recipe (``train.strategy``) as trainer phases.

    "warmup_finetune": head warm-up, then (partial) unfreezing with a higher rate for the head. "lp_ft": a linear
    probe (head only, ``head_epochs``), then every layer (or the last ``unfreeze`` blocks) at ``lp_ft_lr``. Both
    fine-tuning phases are named "finetune" (early stopping watches them) and mix and average alike.
    """
    from edgetl.training.loop import batch_mix, param_groups, set_trainable
    from edgetl.training.trainer import Phase

    t = cfg.train
    lp_ft = t.strategy == "lp_ft"

    def groups(phase: str) -> Any:
        def build(model: nn.Module) -> list[dict[str, Any]]:
            set_trainable(model, spec, None if phase == "head" else t.unfreeze)
            if phase == "head":
                head_lr, backbone_lr = t.head_lr, t.backbone_lr
            else:
                head_lr, backbone_lr = (t.lp_ft_lr, t.lp_ft_lr) if lp_ft else (t.lr, t.backbone_lr)
            return param_groups(model, spec, head_lr=head_lr, backbone_lr=backbone_lr, weight_decay=t.weight_decay)

        return build

    phases = []
    if t.head_epochs:
        phases.append(Phase("probe" if lp_ft else "head", t.head_epochs, groups("head"), warmup_ratio=t.warmup_ratio))
    if t.epochs:
        # the head warm-up fits a new classifier to clean images; mixing and averaging start with fine-tuning
        phases.append(Phase("finetune", t.epochs, groups("finetune"), warmup_ratio=t.warmup_ratio,
                            mix=batch_mix(num_classes, t.mixup_alpha, t.cutmix_alpha),
                            ema_steps=t.ema_epochs * steps, norm_stats="fixed" if lp_ft and t.lp_ft_norm == "pretrained" else "frozen_layers"))
    return phases


def _run(cfg: BuildConfig, target: TargetProfile, out_dir: Path, spec: Any, dist: DistContext,
         resume: bool, stage: str) -> TrainResult:
    import torch

    from edgetl.data import write_split
    from edgetl.tasks import task_for_backbone
    from edgetl.training.loop import autocast_dtype_for, evaluate
    from edgetl.training.progress import TrainProgress
    from edgetl.training.trainer import Callbacks, Judgement, Trainer

    t = cfg.train
    task = task_for_backbone(spec)
    device = select_device(t.device, dist)
    index = _resolve_index(cfg, task, dist)
    resolved = task.resolve_input(cfg, target, spec)
    preprocess = task.preprocess(cfg, spec, resolved)
    input_hash = _input_hash(cfg, index, resolved)
    teacher, teacher_info = None, None
    if t.teacher is not None:  # checked before anything is written
        from edgetl.compress.distill import describe_teacher, load_teacher

        teacher = load_teacher(t.teacher, task=task.name, classes=index.classes,
                               io=task.model_io(resolved, len(index.classes)), preprocess=preprocess)
        teacher_info = {"path": t.teacher, "temperature": t.teacher_temperature, "alpha": t.teacher_alpha,
                        **describe_teacher(t.teacher, index)}
        if dist.is_main:
            log.info("distilling from teacher %s (T %.1f, alpha %.2f)", t.teacher, t.teacher_temperature,
                     t.teacher_alpha)
    counts = {split: index.class_counts(split) for split in index.splits}
    imbalance = index.imbalance_ratio("train")
    if dist.is_main:
        log.info("train class counts %s (largest/smallest %.2f)%s", counts["train"], imbalance,
                 "; consider train.balanced_loss" if imbalance >= 3 and not t.balanced_loss else "")
    head = _head(cfg, counts["train"])

    state = TrainState()
    last_path = out_dir / LAST_NAME
    saved: Checkpoint | None = None
    if resume and last_path.is_file():
        saved = load_checkpoint(last_path)
        if saved.extra.get("input_hash") != input_hash:
            raise ConfigError(f"{last_path} was written with another config or data set; cannot resume from it",
                              hint="rerun with the original settings, or drop --resume to start over")
        state = TrainState.from_dict(saved.extra["state"])
        if dist.is_main:
            log.info("resuming from %s after epoch %d", last_path, state.epoch)
    elif resume and dist.is_main:
        log.info("no %s yet: starting from the first epoch", last_path)
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if saved is None:  # a fresh run: nothing of an older run may look like this run's result
            for name in (MANIFEST_NAME, LAST_NAME, *OUTPUTS):
                (out_dir / name).unlink(missing_ok=True)
        write_split(index, out_dir / "split.json")
    # files the model needs besides its weights (a tokenizer): written here, named by the preprocessing spec
    preprocess, model_files = task.write_model_files(cfg, spec, preprocess, out_dir, write=dist.is_main)
    barrier(dist)

    torch.manual_seed(t.seed)  # the new classifier's initialisation
    model = create_model(t.backbone, len(index.classes), t.weights)
    channels_last = True  # ~1.6x faster training on CPU (oneDNN) and on tensor cores; same results up to rounding
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    best_state = state_dict_cpu(model)
    if saved is not None:
        model.load_state_dict(saved.state_dict)
        best_state = saved.extra.get("best_state") or best_state

    loader, generator = train_loader(cfg, task, index.splits["train"], preprocess, dist, device, t.seed)
    val_loader = eval_loader(cfg, task, index.splits["val"], preprocess, dist, device)
    test_loader = (eval_loader(cfg, task, index.splits["test"], preprocess, dist, device)
                   if index.eval_split == "test" else None)
    amp = autocast_dtype_for(device, t.amp, t.cpu_bf16)
    if dist.is_main and amp is not None:
        log.info("mixed precision: %s forward passes in training (validation in float32)", str(amp).split(".")[-1])
    trainer = Trainer(model, loss=_loss(cfg, index, device, teacher), device=device, dist=dist, amp=amp,
                      channels_last=channels_last, max_steps=t.max_steps_per_epoch, seed=t.seed,
                      patience=t.patience, early_stop_phases=("finetune",))
    trainer.best_kept = best_state
    steps = trainer.steps_per_epoch(loader)
    num_classes = len(index.classes)

    def checkpoint(state_dict: dict[str, Any], extra: dict[str, Any] | None = None) -> Checkpoint:
        return Checkpoint(backbone=spec.name, classes=list(index.classes), image_size=resolved.size,
                          mean=list(spec.mean), std=list(spec.std), crop_pct=cfg.data.crop_pct,
                          interpolation=spec.interpolation, state_dict=state_dict, extra=extra or {})

    few_shot = None
    with TrainProgress(enabled=dist.is_main) as progress:
        def judge(judged: nn.Module, epoch: int) -> Judgement:
            val = evaluate(judged, val_loader, num_classes, device, dist=dist, channels_last=channels_last,
                           progress=progress.bar(f"  epoch {epoch} val", len(val_loader)))
            # better = higher accuracy; at equal accuracy (small val sets move in steps), lower loss
            return Judgement(val, (val.accuracy, -val.loss))

        def on_epoch_end(state: TrainState, row: dict[str, Any], improved: bool, run: Any) -> None:
            if not dist.is_main:
                return
            log.info("epoch %d/%d %s: train loss %.3f acc %.2f%% | val loss %.3f acc %.2f%%%s | %.0f s",
                     row["epoch"], sum(p.epochs for p in phases), row["phase"], row["train_loss"],
                     100 * row["train_accuracy"], row["val_loss"], 100 * row["val_accuracy"],
                     " (best)" if improved else "", row["time_s"])
            extra = {"input_hash": input_hash, "phase": row["phase"], "state": state.as_dict(),
                     "best_state": trainer.best_kept, **run.state()}
            save_checkpoint(checkpoint(state_dict_cpu(model), extra), last_path)
            _write_metrics(out_dir, state, index, counts, imbalance, None, complete=False)
            if state.stopped_early:
                log.info("early stop: no val improvement for %d epochs", t.patience)

        phases = _phases(cfg, spec, steps, num_classes)
        if head == "prototype":  # few shots: class-mean embeddings, judged once on val as epoch 0
            from edgetl.training.fewshot import set_prototype_head

            few_shot = set_prototype_head(model, spec.classifier, _labelled_batches(task, index, preprocess, device),
                                          num_classes, eval_batches=_labelled_batches(
                                              task, index, preprocess, device, index.eval_split)
                                          if dist.is_main else None)
            phases = []
            trainer.judge_start(state, judge)
            trainer.best_kept = state_dict_cpu(model)
            if dist.is_main:
                log.info("prototype head from %s training image(s) per class (no gradient step): val top-1 %.2f%%",
                         "/".join(str(n) for n in few_shot.shots.values()), 100 * state.best_val_accuracy)
        else:
            trainer.fit(phases, loader, state, Callbacks(judge=judge, on_epoch_end=on_epoch_end), progress=progress,
                        resume_extra=saved.extra if saved is not None else None, generator=generator)
        model.load_state_dict(trainer.best_kept)
        tested_from = time.perf_counter()
        eval_stats = None
        if test_loader is not None:
            eval_stats = evaluate(model, test_loader, num_classes, device, dist=dist, channels_last=channels_last,
                                  progress=progress.bar("test (best weights)", len(test_loader)))
        state.wall_time_s += time.perf_counter() - tested_from  # the test pass counts too
        if teacher is not None and teacher_info is not None:  # the teacher on the student's images, for the report
            split_loader = test_loader if test_loader is not None else val_loader
            taught = evaluate(teacher, split_loader, num_classes, device, dist=dist, channels_last=channels_last,
                              progress=progress.bar(f"teacher on {index.eval_split}", len(split_loader)))
            teacher_info.update(eval_split=index.eval_split, eval_accuracy=taught.accuracy, eval_images=taught.count)
    eval_accuracy = eval_stats.accuracy if eval_stats is not None else state.best_val_accuracy
    split_check = None
    if eval_stats is not None:
        split_check = _check_val_against_test(state.best_val_accuracy, len(index.splits["val"]), eval_accuracy,
                                              len(index.splits["test"]), warn=dist.is_main)
    if dist.is_main:
        _log_noise(index.eval_split, eval_accuracy, len(index.splits[index.eval_split]))
    wall = state.wall_time_s
    if dist.is_main:
        _finish(cfg, out_dir, spec, task, model, index, resolved, preprocess, input_hash, state, eval_stats, counts,
                imbalance, device, dist, model_files, few_shot, split_check, stage=stage, teacher_info=teacher_info)
    barrier(dist)
    return TrainResult(out_dir=out_dir, checkpoint=out_dir / MODEL_NAME, best_val_accuracy=state.best_val_accuracy,
                       best_epoch=state.best_epoch, epochs_run=state.epoch, wall_time_s=round(wall, 2),
                       eval_split=index.eval_split, eval_accuracy=eval_accuracy, stopped_early=state.stopped_early,
                       split_check=split_check)


def _check_val_against_test(val_accuracy: float, val_images: int, test_accuracy: float, test_images: int, *,
                            warn: bool) -> dict[str, Any]:
    """``split_disagreement`` of the kept weights, with one warning when val and test differ beyond their noise."""
    from edgetl.stats import split_disagreement

    check = split_disagreement(val_accuracy, val_images, test_accuracy, test_images)
    if warn and check["disagree"]:
        log.warning("val top-1 %.1f%% (%d images) and test top-1 %.1f%% (%d images) differ by more than their noise "
                    "(%s; two-proportion z-test p = %.2g): the test images may come from another distribution than "
                    "the training images (a shift). Unlabelled images of the deployment domain can adapt the model: "
                    "--adapt-data DIR", 100 * val_accuracy, val_images, 100 * test_accuracy, test_images,
                    check["test"], check["p_value"])
    return check


def _finish(cfg: BuildConfig, out_dir: Path, spec: Any, task: Task, model: nn.Module, index: DatasetIndex,
            resolved: ResolvedInput, preprocess: dict[str, Any], input_hash: str, state: TrainState, eval_stats: Any,
            counts: dict[str, dict[str, int]], imbalance: float, device: torch.device, dist: DistContext,
            model_files: Sequence[str] = (), few_shot: Any = None, split_check: dict[str, Any] | None = None, *,
            stage: str = "train", teacher_info: dict[str, Any] | None = None) -> None:
    """Rank 0: the model artifact, labels, final metrics and the manifest; last.pt goes, as the run is complete."""
    import torch

    from edgetl.artifacts import Lineage, ModelCard, save_module
    from edgetl.compress import count_macs_params

    t = cfg.train
    eval_accuracy = eval_stats.accuracy if eval_stats is not None else state.best_val_accuracy
    save_module(model, out_dir / MODEL_NAME)
    io = task.model_io(resolved, len(index.classes))
    example = task.example_inputs(io, 1)
    macs, params = count_macs_params(model.to("cpu").eval(),
                                     next(iter(example.values())) if len(example) == 1 else example)
    card = ModelCard(
        name="fp32", file=MODEL_NAME, kind="module", task=task.name, backbone=spec.name, classes=tuple(index.classes),
        io=io, preprocess=preprocess, data_split="split.json",
        lineage=Lineage(stage=stage, method="distill" if t.teacher else ("prototype" if few_shot else "finetune")),
        macs=macs, params=params,
        metrics={"eval_split": index.eval_split, "eval_accuracy": eval_accuracy,
                 "best_val_accuracy": state.best_val_accuracy, "head": "prototype" if few_shot else "linear",
                 "strategy": None if few_shot else t.strategy, "shots_per_class": counts["train"]},
    )
    write_json(out_dir / "labels.json", list(index.classes))
    _write_metrics(out_dir, state, index, counts, imbalance, eval_stats, complete=True, split_check=split_check,
                   few_shot=few_shot)
    manifest = Manifest(
        stage=stage,
        input_hash=input_hash,
        config={"data": cfg.data.model_dump(mode="json"), "train": t.model_dump(mode="json")},
        inputs={"dataset": index.fingerprint,
                **({"weights": sha256_file(t.weights)} if t.weights not in ("default", "none") else {})},
        outputs=hash_outputs(out_dir, [*OUTPUTS, *model_files]),
        info={
            "models": [card.model_dump(mode="json")],
            "backbone": spec.name, "weights": t.weights, "classes": list(index.classes),
            "image_size": resolved.size, "preprocess": preprocess, "input_sources": dict(resolved.sources),
            "best_val_accuracy": state.best_val_accuracy, "best_epoch": state.best_epoch,
            "eval_split": index.eval_split, "eval_accuracy": eval_accuracy,
            "eval_images": len(index.splits[index.eval_split]),
            "class_counts": counts, "imbalance_ratio": imbalance, "duplicate_groups": len(index.duplicates),
            "skipped_images": len(index.skipped), "epochs_run": state.epoch,
            "stopped_early": state.stopped_early, "wall_time_s": round(state.wall_time_s, 2),
            "device": str(device), "world_size": dist.world_size, "threads": torch.get_num_threads(),
            "head": "prototype" if few_shot else "linear", "strategy": None if few_shot else t.strategy,
            "shots_per_class": counts["train"],
            "prototype_temperature": few_shot.temperature if few_shot else None,
            "val_test_check": split_check,
            # the distillation settings, the teacher's artifact and its top-1 on this run's evaluation split
            "teacher": teacher_info,
        },
    )
    manifest.write(out_dir)
    (out_dir / LAST_NAME).unlink(missing_ok=True)


def _write_metrics(out_dir: Path, state: TrainState, index: DatasetIndex, counts: dict[str, dict[str, int]],
                   imbalance: float, eval_stats: Any, *, complete: bool, split_check: dict[str, Any] | None = None,
                   few_shot: Any = None) -> None:
    per_class: dict[str, dict[str, Any]] = {}
    source = ({"correct": eval_stats.per_class_correct, "total": eval_stats.per_class_total}
              if eval_stats is not None else state.best_per_class)
    if source:
        for name, correct, total in zip(index.classes, source["correct"], source["total"], strict=True):
            per_class[name] = {"count": total, "correct": correct, "accuracy": correct / total if total else None}
    write_json(out_dir / "metrics.json", {
        "complete": complete,
        "epochs": state.history,
        "best_epoch": state.best_epoch,
        "best_val_accuracy": state.best_val_accuracy,
        "eval_split": index.eval_split,
        "eval_accuracy": eval_stats.accuracy if eval_stats is not None else state.best_val_accuracy,
        "eval_per_class": per_class,
        "class_counts": counts,
        "imbalance_ratio": imbalance,
        "stopped_early": state.stopped_early,
        "wall_time_s": round(state.wall_time_s, 2),
        "split_images": {split: len(samples) for split, samples in index.splits.items()},
        "val_test_check": split_check,  # edgetl.stats.split_disagreement (None without a test split)
        "head": "prototype" if few_shot else "linear",
        "shots_per_class": counts["train"],
        "shots_curve": few_shot.curve if few_shot else None,  # the prototype head's accuracy against shots
    })
