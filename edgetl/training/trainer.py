"""The one trainer: phases, warm-up + cosine schedules, weight EMA, early stopping, mixed precision, DDP, resume.

Fine-tuning (head warm-up, then unfreezing) and QAT (one phase on the PT2E fake-quant graph) both run through
``Trainer.fit``; they differ only in their ``Phase`` plans, the loss (``edgetl.training.losses``: anything of the
``loss(inputs, outputs, targets)`` shape, so a distillation loss with a teacher's forward pass fits) and the
callbacks: ``judge`` scores an epoch's model on validation, ``on_epoch_end`` saves checkpoints, ``before_step``
changes the model during an epoch (QAT freezes BatchNorm statistics at a step).

Epochs are seeded by number, so a run resumed from a ``TrainState`` (with the phase's optimizer, schedule, scaler
and EMA state) reaches the same metrics as an uninterrupted one on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edgetl.training.distributed import DistContext, barrier
from edgetl.training.loop import EpochStats

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgetl.training.loop import BatchMix


@dataclass
class Phase:
    """One training phase: what trains, at which rates, for how many epochs.

    Attributes:
        name: "head", "finetune", "qat", ...
        epochs: epochs of this phase.
        param_groups: sets ``requires_grad`` on ``model`` and returns the AdamW parameter groups (``lr``,
            ``weight_decay``, ``name``).
        warmup_ratio: linear LR warm-up as a fraction of the phase's steps, then cosine to 0.
        mix: MixUp/CutMix on every batch (None: off).
        ema_steps: horizon of a weight EMA in optimizer steps (0: off); validation judges the average.
        train_mode: puts the model in training mode (``model.train()`` by default; PT2E graphs need their own).
        norm_stats: which BatchNorm layers stay in eval mode (their running statistics fixed) while the rest
            train: "frozen_layers" those whose parameters are all frozen; "fixed" every one, so the phase normalises
            by the statistics it started with while the affine weights still train (LP-FT's fine-tune); "batch"
            none (``train_mode`` decides).
    """

    name: str
    epochs: int
    param_groups: Callable[[nn.Module], list[dict[str, Any]]]
    warmup_ratio: float = 0.0
    mix: BatchMix | None = None
    ema_steps: float = 0.0
    train_mode: Callable[[nn.Module], None] | None = None
    norm_stats: Literal["frozen_layers", "fixed", "batch"] = "frozen_layers"


@dataclass
class TrainState:
    """Everything an interrupted run needs to continue (saved in the resume checkpoint)."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: tuple[float, ...] = (-1.0, float("-inf"))
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    best_per_class: dict[str, list[int]] | None = None
    phase_best: tuple[float, ...] = (-1.0, float("-inf"))  # early stopping's bar within its phase
    bad_epochs: int = 0
    stopped_early: bool = False
    wall_time_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        data = dict(data)
        for key in ("best_score", "phase_best"):
            if key in data:
                data[key] = tuple(data[key])
        # checkpoints written before the trainer existed stored (accuracy, -loss) without best_score
        if "best_score" not in data and "best_val_accuracy" in data:
            data["best_score"] = (data["best_val_accuracy"], -data.get("best_val_loss", float("inf")))
        return cls(**data)


@dataclass(frozen=True)
class Judgement:
    """A judged epoch: validation stats, the score to maximise, and what to keep if it is the best."""

    stats: EpochStats
    score: tuple[float, ...]
    keep: Any = None  # e.g. the converted int8 model of a QAT epoch (None: the trainer keeps the state dict)


@dataclass
class Callbacks:
    """Hooks into ``Trainer.fit``; every one is optional."""

    judge: Callable[[nn.Module, int], Judgement] | None = None
    on_epoch_end: Callable[[TrainState, dict[str, Any], bool, Any], None] | None = None
    before_step: Callable[[int], None] | None = None  # global step index within the phase


def state_dict_cpu(model: nn.Module) -> dict[str, Any]:
    # contiguous: channels_last strides must not leak into the checkpoint other stages load
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


class PhaseRun:
    """A phase in progress: the optimizer, schedule, (CUDA) grad scaler, weight EMA and DDP wrapper."""

    def __init__(self, phase: Phase, model: nn.Module, steps: int, dist: DistContext, device: torch.device,
                 amp: torch.dtype | None) -> None:
        import torch

        from edgetl.training.loop import WeightEMA, frozen_norm_layers, warmup_cosine

        self.phase, self.model, self.dist, self.device, self.amp = phase, model, dist, device, amp
        groups = phase.param_groups(model)
        self.frozen_norms = ([] if phase.norm_stats == "batch"
                             else frozen_norm_layers(model, every=phase.norm_stats == "fixed"))
        self.optimizer = torch.optim.AdamW(groups)
        total = steps * phase.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           warmup_cosine(total, int(total * phase.warmup_ratio)))
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        self.ema = WeightEMA(model, phase.ema_steps) if phase.ema_steps > 0 else None
        self.wrapped: nn.Module = model
        if dist.enabled:  # rebuilt per phase: DDP registers gradient hooks only for parameters trainable now
            from torch.nn.parallel import DistributedDataParallel

            self.wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def judged_model(self) -> nn.Module:
        """The model validation scores: the weight EMA when it is on."""
        return self.model if self.ema is None else self.ema.module

    def sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics, so all ranks evaluate (and save) the same model."""
        if self.dist.enabled:
            import torch.distributed as tdist

            for buf in self.model.buffers():
                tdist.broadcast(buf, src=0)
            if self.ema is not None:  # each rank averaged its own statistics
                for buf in self.ema.module.buffers():
                    tdist.broadcast(buf, src=0)

    def state(self) -> dict[str, Any]:
        out = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        return out

    def load(self, extra: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(extra["optimizer"])
        self.scheduler.load_state_dict(extra["scheduler"])
        if self.scaler is not None and "scaler" in extra:
            self.scaler.load_state_dict(extra["scaler"])
        if self.ema is not None and "ema" in extra:
            self.ema.load_state_dict(extra["ema"])


def _unwrapped(train_mode: Callable[[nn.Module], None] | None,
               model: nn.Module) -> Callable[[nn.Module], None] | None:
    """The phase's train-mode hook applied to the model itself, not to its DDP wrapper (PT2E graphs need that)."""
    if train_mode is None:
        return None
    hook = train_mode
    return lambda _wrapped: hook(model)


def _ema_update(run: PhaseRun, model: nn.Module) -> Callable[[], None] | None:
    ema = run.ema
    return None if ema is None else (lambda: ema.update(model))


class Trainer:
    """Trains ``model`` through a sequence of phases; see the module docstring.

    Args:
        model: the module to train (an ``nn.Module`` or a PT2E ``GraphModule``), already on ``device``.
        loss: ``loss(inputs, outputs, targets) -> Tensor``.
        device, dist: where it trains, and the ``torchrun`` process group (if any).
        amp: mixed-precision dtype of the forward pass (None: float32).
        channels_last: feed 4-D inputs in channels-last memory format.
        max_steps: cap on optimizer steps per epoch.
        seed: epochs are seeded as ``seed * 100_003 + epoch`` (augmentation, dropout, data order).
        patience: early stopping after this many epochs of a phase in ``early_stop_phases`` without a better score.
        prefer_later: at an equal score the later epoch wins (QAT: the trained model over its starting point).
    """

    def __init__(self, model: nn.Module, *, loss: Any, device: torch.device, dist: DistContext,
                 amp: torch.dtype | None = None, channels_last: bool = False, max_steps: int | None = None,
                 seed: int = 0, patience: int | None = None, early_stop_phases: Sequence[str] = (),
                 prefer_later: bool = False) -> None:
        self.model, self.loss, self.device, self.dist = model, loss, device, dist
        self.amp, self.channels_last, self.max_steps, self.seed = amp, channels_last, max_steps, seed
        self.patience, self.early_stop_phases, self.prefer_later = patience, tuple(early_stop_phases), prefer_later
        self.best_kept: Any = None  # what the judge asked to keep at the best epoch
        self.run: PhaseRun | None = None

    def steps_per_epoch(self, loader: Any) -> int:
        return min(len(loader), self.max_steps or len(loader))

    def _update(self, state: TrainState, row: dict[str, Any], judged: Judgement, phase: str, total: int) -> bool:
        state.history.append(row)
        state.epoch = row["epoch"]
        score = judged.score
        improved = score >= state.best_score if self.prefer_later else score > state.best_score
        if improved:
            state.best_score = score
            state.best_val_accuracy, state.best_val_loss = judged.stats.accuracy, judged.stats.loss
            state.best_epoch = state.epoch
            state.best_per_class = {"correct": judged.stats.per_class_correct, "total": judged.stats.per_class_total}
        if phase in self.early_stop_phases and self.patience is not None:
            # the phase competes with its own best: unfreezing first costs accuracy (BatchNorm switches to batch
            # statistics), so it is not stopped before it has had `patience` epochs to recover
            if score > state.phase_best:
                state.phase_best, state.bad_epochs = score, 0
            else:
                state.bad_epochs += 1
            state.stopped_early = state.bad_epochs >= self.patience and state.epoch < total
        return improved

    def judge_start(self, state: TrainState, judge: Callable[[nn.Module, int], Judgement]) -> Judgement:
        """Judge the untrained starting point as epoch 0 (QAT: the PTQ-initialised model)."""
        judged = judge(self.model, 0)
        row = {"epoch": 0, "phase": "start", "train_loss": None, "train_accuracy": None,
               "val_loss": judged.stats.loss, "val_accuracy": judged.stats.accuracy}
        if self._update(state, row, judged, "start", 0):
            self.best_kept = judged.keep
        state.epoch = 0
        return judged

    def fit(self, phases: Sequence[Phase], loader: Any, state: TrainState, callbacks: Callbacks, *,
            progress: Any = None, resume_extra: dict[str, Any] | None = None,
            generator: torch.Generator | None = None) -> TrainState:
        """Train until every phase's epochs are done or early stopping ends it; returns the state.

        ``resume_extra`` holds the ``PhaseRun.state()`` of an interrupted phase (with its ``phase`` name).
        """
        import torch

        from edgetl.training.loop import train_one_epoch

        started = time.perf_counter()
        earlier_wall = state.wall_time_s
        total = sum(p.epochs for p in phases)
        steps = self.steps_per_epoch(loader)
        bounds: list[tuple[int, Phase]] = []
        first = 0
        for p in phases:
            bounds.append((first, p))
            first += p.epochs
        phase_started: str | None = None
        while state.epoch < total and not state.stopped_early:
            epoch = state.epoch
            offset, phase = next((o, p) for o, p in reversed(bounds) if epoch >= o)
            if phase.name != phase_started:
                self.run = PhaseRun(phase, self.model, steps, self.dist, self.device, self.amp)
                if resume_extra and resume_extra.get("phase") == phase.name and "optimizer" in resume_extra:
                    self.run.load(resume_extra)
                phase_started = phase.name
            run = self.run
            assert run is not None
            epoch_start = time.perf_counter()
            torch.manual_seed(self.seed * 100_003 + epoch)  # augmentation and dropout: same per epoch on resume
            if generator is not None:
                generator.manual_seed(self.seed * 100_003 + epoch)
            if hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
            label = f"epoch {epoch + 1}/{total} {phase.name}"
            bar = progress.bar(label, steps) if progress is not None else None
            stats = train_one_epoch(
                run.wrapped, loader, self.loss, run.optimizer, run.scheduler, self.device, dist=self.dist,
                frozen_norms=run.frozen_norms, max_steps=steps, scaler=run.scaler, autocast_dtype=self.amp,
                channels_last=self.channels_last,
                after_step=_ema_update(run, self.model),
                before_step=None if callbacks.before_step is None else
                (lambda i, o=(epoch - offset) * steps: callbacks.before_step(o + i)),  # type: ignore[misc]
                train_mode=_unwrapped(phase.train_mode, self.model), mix=phase.mix, progress=bar)
            run.sync_buffers()
            judged_model = run.judged_model()
            assert callbacks.judge is not None, "a Trainer needs a judge callback to validate epochs"
            judged = callbacks.judge(judged_model, epoch + 1)
            lrs = {g["name"]: g["lr"] for g in run.optimizer.param_groups}
            row = {"epoch": epoch + 1, "phase": phase.name, "train_loss": stats.loss,
                   "train_accuracy": stats.accuracy, "val_loss": judged.stats.loss,
                   "val_accuracy": judged.stats.accuracy, "lr": lrs.get("head", lrs.get("head_no_decay")),
                   "lr_backbone": lrs.get("backbone"), "time_s": time.perf_counter() - epoch_start}
            improved = self._update(state, row, judged, phase.name, total)
            if improved:
                self.best_kept = judged.keep if judged.keep is not None else state_dict_cpu(judged_model)
            state.wall_time_s = earlier_wall + time.perf_counter() - started
            if callbacks.on_epoch_end is not None:
                callbacks.on_epoch_end(state, row, improved, run)
            barrier(self.dist)
        state.wall_time_s = earlier_wall + time.perf_counter() - started
        return state
