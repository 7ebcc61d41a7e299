"""``edgetl quantize``: quantization-aware fine-tuning to int8 (torchao PT2E), with a post-training baseline.

QAT: ``torch.export`` (dynamic batch) -> ``prepare_qat_pt2e`` with edgetl's own quantizer (``edgetl.quant``: uint8
activations, int8 per-channel weights, BatchNorm folded) -> a few epochs at a low learning rate with the fine-tuning
augmentation, observers and then BatchNorm statistics frozen before the end -> ``convert_pt2e``.
PTQ: the same quantizer, ``prepare_pt2e``, calibration on training images, ``convert_pt2e``.

Both converted models are saved as ``torch.export`` programs (``qat.pt2``, ``ptq.pt2``), re-exported with a dynamic
batch; ``edgetl.quant.pt2e.load_program`` loads them back. The export stage turns them into ONNX QDQ and OpenVINO IR.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, ModelFileError
from edgetl.fsutil import atomic_dir, sha256_json, write_json
from edgetl.manifest import Manifest, hash_outputs, library_versions, read_manifest
from edgetl.targets import TargetProfile

if TYPE_CHECKING:
    import torch

    from edgetl.backbones import Checkpoint
    from edgetl.data import DatasetIndex, Preprocess

log = logging.getLogger("edgetl.quantize")

STAGE = "quantize"
PROGRAMS = {"qat": "qat.pt2", "ptq": "ptq.pt2"}


@dataclass
class TrainInputs:
    """What the fine-tune stage left in ``train/``, checked against its manifest."""

    dir: Path
    manifest: Manifest
    checkpoint: Checkpoint
    index: DatasetIndex
    preprocess: Preprocess

    @property
    def eval_samples(self) -> list[tuple[str, int]]:
        return list(self.index.splits[self.index.eval_split])


def read_train_dir(train_dir: Path) -> TrainInputs:
    """Load ``train/`` (checkpoint, split, preprocessing); a modified or missing file is a ``ModelFileError``."""
    from edgetl.backbones import load_checkpoint
    from edgetl.data import Preprocess, read_split

    manifest = read_manifest(train_dir)
    bad = [name for name in manifest.verify_outputs(train_dir) if name in ("model.pt", "split.json")]
    if bad:
        raise ModelFileError(f"{train_dir}: {', '.join(bad)} missing or not matching the sha256 in its manifest",
                             hint="rerun `edgetl train` (or `edgetl build`)")
    ckpt = load_checkpoint(train_dir / "model.pt")
    index = read_split(train_dir / "split.json")
    raw = manifest.info.get("preprocess")
    pp = Preprocess.model_validate(raw) if raw else Preprocess.make(
        ckpt.image_size, ckpt.crop_pct, ckpt.mean, ckpt.std, ckpt.interpolation)
    return TrainInputs(train_dir, manifest, ckpt, index, pp)


@dataclass
class QuantizeResult:
    """What ``quantize`` produced; the files are listed in ``out_dir/manifest.json``."""

    out_dir: Path
    programs: dict[str, Path]  # "qat" / "ptq" -> the .pt2 file
    accuracy: dict[str, float]  # "fp32" / "ptq" / "qat" -> torch top-1 on the evaluation split
    eval_split: str
    kept_float: list[dict[str, str]] = field(default_factory=list)
    wall_time_s: dict[str, float] = field(default_factory=dict)


def input_hash(cfg: BuildConfig, train: Manifest) -> str:
    return sha256_json({"train": train.hash, "quantize": cfg.quantize.model_dump(mode="json"),
                        "versions": library_versions()})


# --------------------------------------------------------------------------------------------- data and evaluation
def _train_loader(cfg: BuildConfig, inputs: TrainInputs, seed: int) -> Any:
    """The fine-tuning augmentation (``edgetl.data.augment``), so QAT sees the distribution training saw."""
    import torch
    from torch.utils.data import DataLoader

    from edgetl.data import ImageDataset, loader_settings
    from edgetl.data.augment import train_transform_for

    t, pp = cfg.train, inputs.preprocess
    augment = train_transform_for(t, pp)
    data: Any = ImageDataset(inputs.index.splits["train"], augment)  # map-style: DataLoader needs only len/getitem
    generator = torch.Generator().manual_seed(seed)
    # a batch of one or two images gives noisy BatchNorm statistics; drop the last one when there is more than one
    return DataLoader(data, batch_size=t.batch_size, shuffle=True, generator=generator,
                      **loader_settings(cfg.data.num_workers),
                      drop_last=len(data) > t.batch_size)


def _calibration_batches(cfg: BuildConfig, inputs: TrainInputs) -> list[torch.Tensor]:
    """``calibration_images`` training images (a seeded sample), with the evaluation preprocessing."""
    import torch

    from edgetl.data import iter_eval_batches

    samples = list(inputs.index.splits["train"])
    random.Random(cfg.quantize.seed).shuffle(samples)
    chunk = samples[: cfg.quantize.calibration_images]
    return [torch.from_numpy(x) for x, _ in iter_eval_batches(chunk, inputs.preprocess, cfg.train.batch_size)]


def torch_accuracy(model: Any, batches: list[tuple[Any, Any]], progress: Any = None) -> float:
    """Top-1 accuracy of a torch model (eager or exported graph) on preprocessed (images, labels) batches."""
    import torch

    correct = total = 0
    with torch.inference_mode():
        for i, (images, labels) in enumerate(batches):
            logits = model(torch.from_numpy(images))
            correct += int((logits.argmax(1).numpy() == labels).sum())
            total += len(labels)
            if progress is not None:
                progress(i + 1, 0.0, correct / max(1, total))
    return correct / max(1, total)


def _split_batches(inputs: TrainInputs, split: str, batch_size: int) -> list[tuple[Any, Any]]:
    """One split, preprocessed for evaluation, as (images, labels) NumPy batches."""
    from edgetl.data import iter_eval_batches

    return list(iter_eval_batches(inputs.index.splits[split], inputs.preprocess, batch_size))


# --------------------------------------------------------------------------------------------- PTQ and QAT
def _quantizer(cfg: BuildConfig, qat: bool) -> Any:
    from edgetl.quant import QuantizerOptions, make_quantizer

    q = cfg.quantize
    return make_quantizer(QuantizerOptions(qat=qat, keep_first_fp=q.keep_first_fp, keep_last_fp=q.keep_last_fp))


def run_ptq(cfg: BuildConfig, model: torch.nn.Module, example: torch.Tensor,
            calibration: list[torch.Tensor]) -> tuple[Any, Any, dict[str, Any]]:
    """Post-training quantization: observers on the exported graph, a calibration pass, ``convert_pt2e``."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgetl.training.progress import TrainProgress

    quantizer = _quantizer(cfg, qat=False)
    graph = _capture(model, example, "the fine-tuned model")
    prepared = prepare_pt2e(graph, quantizer)
    with TrainProgress() as progress, torch.inference_mode():
        bar = progress.bar("PTQ calibration", len(calibration))
        for i, images in enumerate(calibration):
            prepared(images)
            if bar:
                bar(i + 1, 0.0, 0.0)
    return convert_pt2e(prepared), quantizer, {"calibration_images": sum(len(b) for b in calibration)}


def run_qat(cfg: BuildConfig, inputs: TrainInputs, model: torch.nn.Module, example: torch.Tensor,
            calibration: list[torch.Tensor], val_batches: list[tuple[Any, Any]]) -> tuple[Any, Any, dict[str, Any]]:
    """QAT: range initialisation on ``calibration``, a few epochs of fake-quantized training from the fine-tuned
    weights (BatchNorm folded with its running statistics, frozen by default), then ``convert_pt2e``.

    Like fine-tuning, QAT keeps its best weights on the validation split (``val_batches``; never the test split):
    a converted copy is evaluated after range initialisation (epoch 0, no training yet) and after every epoch; the
    best (the later one at equal accuracy) is returned. Returns the converted model, the quantizer, and a report
    with the per-epoch history and the kept model's validation accuracy.
    """
    import copy

    import torch
    from torchao.quantization.pt2e import (
        disable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from edgetl.quant.pt2e import freeze_batchnorm_stats, match_qat_batchnorm_eps
    from edgetl.quant.quantizer import calibrate_qat_ranges
    from edgetl.training.loop import warmup_cosine
    from edgetl.training.progress import TrainProgress

    q = cfg.quantize
    torch.manual_seed(q.seed)
    loader = _train_loader(cfg, inputs, q.seed)
    steps_per_epoch = min(len(loader), q.max_steps_per_epoch or len(loader))
    total = q.qat_epochs * steps_per_epoch
    freeze_bn_step = int(q.freeze_bn_at * total)
    quantizer = _quantizer(cfg, qat=True)
    match_qat_batchnorm_eps(model)
    prepared = prepare_qat_pt2e(_capture(model, example, "the fine-tuned model"), quantizer)
    # Range initialisation: activation ranges from PTQ's histogram calibration on the same images (evaluation
    # preprocessing), fixed from then on, so QAT starts from the PTQ model and the weights learn the int8 grid.
    move_exported_model_to_eval(prepared)
    calibrate_qat_ranges(prepared, calibration)
    optimizer = torch.optim.AdamW(prepared.parameters(), lr=q.qat_lr, weight_decay=0.0)
    # no warm-up: the weights are already trained; decay to 0 so the last steps barely move the frozen grid
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, 0))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

    def validate(epoch: int, train_loss: float | None, train_acc: float | None) -> None:
        # the converted int8 model is what ships; the fake-quant graph can differ from it by a point or more
        # (measured on digits), so each candidate is converted (a copy) and judged as converted
        candidate = copy.deepcopy(prepared)
        candidate.apply(disable_observer)
        move_exported_model_to_eval(candidate)
        converted = convert_pt2e(candidate)
        acc = torch_accuracy(converted, val_batches)
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_accuracy": acc})
        if acc >= best["accuracy"]:
            best.update(accuracy=acc, epoch=epoch, model=converted)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"accuracy": -1.0, "epoch": 0, "model": None}
    validate(0, None, None)
    log.info("QAT epoch 0 (PTQ ranges, no training yet): val top-1 %.2f%%", 100 * history[-1]["val_accuracy"])
    step = 0
    with TrainProgress() as progress:
        for epoch in range(q.qat_epochs):
            move_exported_model_to_train(prepared)  # (this restores BatchNorm's batch statistics)
            bar = progress.bar(f"QAT epoch {epoch + 1}/{q.qat_epochs}", steps_per_epoch)
            loss_sum = correct = seen = 0.0
            for i, (images, labels) in enumerate(loader):
                if i >= steps_per_epoch:
                    break
                if step >= freeze_bn_step:
                    freeze_batchnorm_stats(prepared)  # a no-op once frozen
                logits = prepared(images)
                loss = criterion(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                n = len(labels)
                loss_sum += loss.item() * n
                correct += float((logits.argmax(1) == labels).sum())
                seen += n
                if bar:
                    bar(i + 1, loss_sum / seen, correct / seen)
            validate(epoch + 1, loss_sum / max(1, seen), correct / max(1, seen))
            log.info("QAT epoch %d/%d: train loss %.3f acc %.2f%% | val top-1 %.2f%% (%d steps, BatchNorm %s)",
                     epoch + 1, q.qat_epochs, loss_sum / max(1, seen), 100 * correct / max(1, seen),
                     100 * history[-1]["val_accuracy"], steps_per_epoch,
                     "frozen" if step > freeze_bn_step else "live")
    log.info("QAT keeps epoch %d (val top-1 %.2f%%)", best["epoch"], 100 * best["accuracy"])
    report = {"epochs": q.qat_epochs, "lr": q.qat_lr, "steps_per_epoch": steps_per_epoch,
              "kept_epoch": best["epoch"], "kept_val_accuracy": best["accuracy"],
              "val_images": sum(len(labels) for _, labels in val_batches), "history": history}
    return best["model"], quantizer, report


def _capture(model: torch.nn.Module, example: torch.Tensor, what: str) -> Any:
    from edgetl.quant.pt2e import capture

    return capture(model, example, stage=STAGE, what=what).module()


# --------------------------------------------------------------------------------------------- the stage
def quantize(cfg: BuildConfig, target: TargetProfile, train_dir: Path, out_dir: Path) -> QuantizeResult:
    """Quantize the fine-tuned model in ``train_dir`` to int8 (QAT and/or PTQ) into ``out_dir``.

    Args:
        cfg: the build config; reads ``cfg.quantize`` (and ``cfg.train`` for batch size and augmentation).
        target: the target profile (recorded; quantization itself is target-independent).
        train_dir: the fine-tune stage's directory (``model.pt``, ``split.json``, ``manifest.json``).
        out_dir: where ``qat.pt2``, ``ptq.pt2``, ``metrics.json`` and ``manifest.json`` go (replaced whole).

    Returns:
        The program paths, torch accuracies (fp32 / ptq / qat) on the evaluation split and wall times.
    """
    import torch

    q = cfg.quantize
    if not q.qat and not q.ptq_baseline:
        raise ConfigError("quantize: both qat and ptq_baseline are off, so there is nothing to produce",
                          hint="set quantize.qat or quantize.ptq_baseline to true")
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    inputs = read_train_dir(train_dir)
    model = inputs.checkpoint.build_model().eval()
    size = inputs.preprocess.image_size
    example = torch.randn(2, 3, size, size)
    eval_batches = _split_batches(inputs, inputs.index.eval_split, cfg.train.batch_size)
    validating_on_eval = inputs.index.eval_split == "val"
    val_batches = eval_batches if validating_on_eval else _split_batches(inputs, "val", cfg.train.batch_size)
    accuracy = {"fp32": torch_accuracy(model, eval_batches)}
    walls: dict[str, float] = {}
    kept: list[dict[str, str]] = []
    layers: dict[str, dict[str, int]] = {}
    from edgetl.quant import count_quantized_layers
    from edgetl.quant.pt2e import save_program

    with atomic_dir(out_dir) as tmp:
        programs: dict[str, Path] = {}
        runs: list[tuple[str, Any]] = []
        reports: dict[str, dict[str, Any]] = {}
        calibration = _calibration_batches(cfg, inputs)  # PTQ's calibration and QAT's range initialisation
        if q.ptq_baseline:
            runs.append(("ptq", lambda: run_ptq(cfg, model, example, calibration)))
        if q.qat:
            # QAT trains a copy: the fp32 model stays the PTQ and parity reference
            runs.append(("qat", lambda: run_qat(cfg, inputs, inputs.checkpoint.build_model(), example,
                                                calibration, val_batches)))
        for name, run in runs:
            start = time.perf_counter()
            converted, quantizer, report = run()
            reports[name] = report
            save_program(converted, example, tmp / PROGRAMS[name], stage=STAGE)
            walls[name] = round(time.perf_counter() - start, 2)
            programs[name] = out_dir / PROGRAMS[name]
            # QAT already measured its kept model on val; evaluate again only when the evaluation split is test
            kept_acc = report.get("kept_val_accuracy")
            accuracy[name] = kept_acc if kept_acc is not None and validating_on_eval else torch_accuracy(
                converted, eval_batches)
            layers[name] = count_quantized_layers(converted)
            kept = list(quantizer.kept_float)
            log.info("%s: top-1 %.2f%% (fp32 %.2f%%), %d int8 layers, %.1fs", name, 100 * accuracy[name],
                     100 * accuracy["fp32"], layers[name]["int8"], walls[name])
        metrics = {
            "eval_split": inputs.index.eval_split, "eval_images": len(inputs.eval_samples),
            "accuracy": accuracy, "wall_time_s": walls, "int8_layers": layers, "kept_float": kept,
            "qat": reports.get("qat", {}), "ptq": reports.get("ptq", {}),
            "calibration_images": q.calibration_images,
        }
        write_json(tmp / "metrics.json", metrics)
        names = [PROGRAMS[n] for n in programs] + ["metrics.json"]
        Manifest(
            stage=STAGE,
            input_hash=input_hash(cfg, inputs.manifest),
            config={"quantize": q.model_dump(mode="json"), "target": target.name},
            inputs={"train/manifest.json": inputs.manifest.hash},
            outputs=hash_outputs(tmp, names),
            info={
                "programs": {n: PROGRAMS[n] for n in programs},
                "backbone": inputs.checkpoint.backbone, "classes": list(inputs.checkpoint.classes),
                "preprocess": inputs.preprocess.model_dump(mode="json"), "source_manifest": inputs.manifest.hash,
                "accuracy": accuracy, "eval_split": inputs.index.eval_split, "int8_layers": layers,
                "kept_float": kept, "quantizer": "edgetl.quant.EdgeQuantizer (u8 act, s8 per-channel weights)",
            },
        ).write(tmp)
    return QuantizeResult(out_dir=out_dir, programs=programs, accuracy=accuracy, eval_split=inputs.index.eval_split,
                          kept_float=kept, wall_time_s=walls)
