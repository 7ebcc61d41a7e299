"""Typed, validated, frozen configuration: one model per stage, composed into ``BuildConfig``.

Every default is stated here and only here. A YAML file can hold any of it (``--config FILE``); command-line flags
override the file. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgetl.errors import ConfigError
from edgetl.targets import DeviceSpec


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextDataOptions(_Section):
    """Where the text and the label are in each row, and which labels exist.

    Attributes:
        text_column: column name (needs a header; a key for JSONL) or 0-based position of the text.
        label_column: column name or 0-based position of the label.
        header: whether CSV/TSV files start with a header row; None detects it (always True with named columns).
        delimiter: CSV/TSV field delimiter; None takes it from the suffix (``.csv`` comma, ``.tsv`` tab).
        quoting: honour ``"``-quoted fields (embedded delimiters and newlines); turn off for files whose texts
            start with a bare ``"`` that is part of the text (tokenised corpora).
        labels: the class names in class-index order; None takes them from the training rows, sorted (numerically
            when every label is a number). Rows with another label are bad rows.
    """

    text_column: str | int = 0
    label_column: str | int = 1
    header: bool | None = None
    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    quoting: bool = True
    labels: list[str] | None = None

    @field_validator("text_column", "label_column")
    @classmethod
    def _non_negative(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 0:
            raise ValueError("a column position counts from 0")
        return value

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) < 2:
            raise ValueError("a classifier needs at least two labels")
        if len(set(value)) != len(value):
            raise ValueError(f"labels repeat: {sorted(k for k, n in Counter(value).items() if n > 1)}")
        return value


# Fine-tuning, QAT and pruning recovery keep their best epoch on val, so an accuracy measured on val is optimistic (on
# the digits demo QAT int8 read 95.26 % on val against 93.31 % fp32, a "gain" from picking the best of three epochs on
# the same images). Where edgetl splits the data itself it also holds out a test split for every figure a budget, the
# gate or the headline uses: 15 % of what remains after val (digits: 1,797 images -> 1,222 train, 359 val, 216 test),
# enough images for a top-1 figure to move in steps of about half a point while train keeps most of the data.
HELD_OUT_TEST_RATIO = 0.15


def held_out_test_ratio(test_ratio: float | None, val_made: bool) -> float:
    """The share of train (after val) to hold out as test for a data set without a test split of its own.

    Args:
        test_ratio: ``data.test_ratio`` as configured (None: the default rule).
        val_made: whether edgetl made the val split itself (the data has no val/ folder or val file).
    """
    if test_ratio is not None:
        return test_ratio
    return HELD_OUT_TEST_RATIO if val_made else 0.0


class DataConfig(_Section):
    path: str = "digits"  # an ImageFolder root, or a built-in data set name
    val_ratio: float = Field(default=0.2, gt=0, lt=1)  # used only when the root has no val/ split
    # Share of what remains after val held out as test when the data has no test/ split. None: HELD_OUT_TEST_RATIO
    # when edgetl makes the val split itself (the data has only train/), none when the user gave val/ (their data is
    # not carved up; the figures are then on val, which selection used, and the report says so). 0: never.
    test_ratio: float | None = Field(default=None, ge=0, lt=1)
    split_seed: int = 0
    strict: bool = False  # unreadable images: skip with one warning (False) or fail (True)
    num_workers: int | None = Field(default=None, ge=0)  # None: min(4, cpu count)
    # Start training DataLoader workers afresh each epoch from the generator the trainer reseeds per epoch: a run
    # resumed with workers then matches an uninterrupted one exactly. Off by default: persistent workers carry
    # their random state from epoch to epoch, which is the augmentation stream every published figure was
    # measured with (switching changes the results as a new seed would: digits demo fp32 94.15 % -> 92.48 %).
    restart_workers: bool = False
    # resize the short side to image_size / crop_pct, then centre-crop image_size (timm/torchvision convention)
    crop_pct: float = Field(default=0.875, gt=0, le=1)
    # text data sets (CSV/TSV/JSONL): where the text and label columns are, the labels; None: column 0 text, 1 label
    text: TextDataOptions | None = None
    # a folder of unlabelled images from the deployment domain (any layout): turns on the adapt stage, and int8
    # calibration then uses these images; they are never evaluated on (byte-identical evaluation images: an error)
    adapt: str | None = None

    def held_out_test_ratio(self, val_made: bool) -> float:
        """``held_out_test_ratio`` for this config's ``test_ratio``."""
        return held_out_test_ratio(self.test_ratio, val_made)


# train.head_epochs when it is None, per recipe (edgetl.config.TrainConfig.strategy)
HEAD_EPOCHS = {"warmup_finetune": 2, "lp_ft": 8}


class TrainConfig(_Section):
    backbone: str = "efficientnet_lite0"
    weights: str = "default"  # "default" (the backbone's pretrained weights), "none", or a checkpoint path
    image_size: int | None = Field(default=None, ge=16)  # None: the target's input size
    max_seq_len: int | None = Field(default=None, ge=2)  # text: tokens per text, special ones included; None: the backbone's
    batch_size: int = Field(default=32, ge=1)
    # The fine-tuning recipe (edgetl.stages.finetune.resolve_recipe, _phases). "warmup_finetune": head_epochs of
    # head-only warm-up, then `epochs` of fine-tuning at lr (head) / backbone_lr. "lp_ft" (Kumar et al., ICLR 2022):
    # a linear probe, the head trained on the frozen features for head_epochs, then `epochs` of a gentle full
    # fine-tune at lp_ft_lr, head and backbone alike: a head that already fits sends small gradients into the
    # backbone, so the pretrained features are less distorted for inputs unlike the training images. "auto" (the
    # default): lp_ft for an image backbone with pretrained weights, warmup_finetune otherwise (random weights have
    # no features to preserve; text was not measured). Measured by benchmarks/shift.py and edgetl compare (see
    # docs/design.md, "Transfer under shift"): lp_ft passed the robust-default checks on hymenoptera, flowers5 and
    # digits; warmup_finetune was worse than feature extraction beyond noise on every shifted flowers5 domain.
    strategy: Literal["auto", "warmup_finetune", "lp_ft"] = "auto"
    # Head-only epochs before fine-tuning, backbone frozen: the warm-up of warmup_finetune, the probe of lp_ft.
    # None: the recipe's own (HEAD_EPOCHS: 2 for the warm-up; 8 for the probe, long enough for a linear head on
    # frozen features to reach its plateau at head_lr with cosine decay; the trainer keeps the best epoch of either
    # phase).
    head_epochs: int | None = Field(default=None, ge=0)
    lp_ft_lr: float = Field(default=1e-4, gt=0)  # half of backbone_lr, and 10x below the warm-up recipe's head lr
    # LP-FT's fine-tune normalises by the pretrained BatchNorm statistics the probe fitted the head to ("pretrained":
    # every BatchNorm layer stays in eval mode, its affine weights still train) or by each batch's ("batch", as plain
    # fine-tuning does).
    lp_ft_norm: Literal["pretrained", "batch"] = "pretrained"
    head_lr: float = Field(default=3e-3, gt=0)
    epochs: int = Field(default=10, ge=0)  # full fine-tuning epochs after the warm-up
    lr: float = Field(default=1e-3, gt=0)  # head learning rate while fine-tuning
    backbone_lr: float = Field(default=2e-4, gt=0)  # lower rate for the pretrained layers
    # "all", or the last N blocks of the backbone (with every layer after them); 0 keeps training the head only
    unfreeze: Literal["all"] | Annotated[int, Field(ge=0)] = "all"
    weight_decay: float = Field(default=0.01, ge=0)  # AdamW; never applied to biases and norm layers
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)  # linear LR warm-up as a fraction of each phase's steps
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    hflip: bool = True  # horizontal flips; turn off where mirror images change the class (text, digits)
    # RandomResizedCrop keeps between this fraction and all of the image's area. ImageNet's 0.08 is tuned for
    # 1.3 M large images; on small data sets and small images it mostly crops the object away.
    min_crop_scale: float = Field(default=0.25, gt=0, le=1)
    color_jitter: float = Field(default=0.2, ge=0, le=1)  # brightness/contrast/saturation strength; no hue shift
    # Policy augmentation after the crop (torchvision): "trivial" (TrivialAugmentWide: one random op of random
    # strength per image, no tuning) or "randaugment" (2 ops, magnitude 9). "none" by default: they change colours
    # and geometry in ways some domains (medical scans, digits) don't tolerate; turn on for natural photos.
    auto_augment: Literal["none", "trivial", "randaugment"] = "none"
    random_erasing: float = Field(default=0.0, ge=0, le=1)  # probability of erasing one random box per image
    # MixUp / CutMix on training batches (Beta(alpha, alpha) mixing; one of the two per batch when both are > 0;
    # 0 turns each off). Regularisers for small data sets that a model overfits; they need more epochs to pay off.
    mixup_alpha: float = Field(default=0.0, ge=0)
    cutmix_alpha: float = Field(default=0.0, ge=0)
    # Weight the loss by inverse class frequency. Off by default: the reported accuracy is on the natural class mix,
    # which reweighting usually lowers; turn it on when the rare classes matter more than the overall accuracy.
    balanced_loss: bool = False
    patience: int = Field(default=3, ge=1)  # early stopping: fine-tuning epochs without val improvement
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # float16 mixed precision on CUDA (validation stays float32)
    # bfloat16 autocast when training on a CPU that computes it natively (AVX512-BF16/AMX; ignored elsewhere).
    # Opt-in: measured on an AMX CPU, a lite0 step is 1.7x faster at 224 px, 1.2x at 160 px and no faster at 96 px,
    # and the digits demo (96 px, 4 epochs) ended 2 points lower in float32 validation than with float32 training.
    cpu_bf16: bool = False
    # Weight EMA during fine-tuning: validation (and so the kept checkpoint) uses an exponential moving average of
    # the weights over about this many epochs; 0 turns it off.
    ema_epochs: float = Field(default=0.0, ge=0)
    # CPU threads of the training process; None: torch's default (one per core). On a machine shared with other
    # jobs use fewer: measured here, 2 threads on 2 cores with one core busy ran a step 6x slower than 1 thread.
    threads: int | None = Field(default=None, ge=1)
    max_steps_per_epoch: int | None = Field(default=None, ge=1)  # cap for quick runs and tests
    # Distil from another build's float model (its run directory, or a stage directory such as RUN/train): any
    # backbone of the same task, classes and input size. KL of temperature-softened logits + cross-entropy.
    teacher: str | None = None
    # the classifier: "linear" (fine-tuned, the recipe above), "prototype" (class-mean embeddings of the frozen
    # pretrained backbone, no gradient step: for a few images per class), or "auto": prototype when the smallest
    # class has at most edgetl.training.fewshot.FEW_SHOT_MAX_SHOTS training images, else linear
    head: Literal["auto", "linear", "prototype"] = "auto"
    teacher_temperature: float = Field(default=4.0, gt=0)
    teacher_alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the distillation term

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lp_epochs" in data:
            raise ValueError("train.lp_epochs is now train.head_epochs: the head-only epochs of either recipe "
                             "(LP-FT's probe, the warm-up's warm-up)")
        return data


class PruneConfig(_Section):
    """The optional ``prune`` stage (structured channel pruning + recovery); off unless ``enabled``."""

    enabled: bool = False
    # the goal: exactly one of these (edgetl.compress.PruneGoal)
    ratio: float | None = Field(default=None, gt=0, lt=1)  # fraction of each prunable group's channels removed
    macs_fraction: float | None = Field(default=None, gt=0, lt=1)  # keep at most this fraction of the MACs
    params_fraction: float | None = Field(default=None, gt=0, lt=1)  # keep at most this fraction of the params
    round_to: int = Field(default=8, ge=1)  # kept channel counts are multiples of this (int8 kernels)
    importance: Literal["layer", "global"] = "layer"  # measured: see edgetl.compress.prune
    protected: tuple[str, ...] | None = None  # module paths kept whole; None: the stem and the classifier
    # recovery: fine-tuning of every layer through the shared trainer, the best epoch on val kept
    epochs: int = Field(default=3, ge=0)  # 0: prune only (measured: a pruned lite0 needs recovery)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    # knowledge distillation from the unpruned model (KL of temperature-softened logits + cross-entropy);
    # off: cross-entropy only
    distill: bool = True
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the distillation term (1 - alpha: cross-entropy)
    max_steps_per_epoch: int | None = Field(default=None, ge=1)  # cap for quick runs and tests
    seed: int = 0


class AdaptConfig(_Section):
    """The ``adapt`` stage: the float model's normalisation layers adapted to ``data.adapt``'s unlabelled images."""

    # adabn: BatchNorm statistics re-estimated on the target images (no labels, no gradient step; cheap and the
    # safer default). tent: also the BatchNorm affine parameters trained to minimise prediction entropy (TENT).
    method: Literal["adabn", "tent"] = "adabn"
    # source: the statistics are anchored to the training images' moments as the model normalises them, so a
    # layer whose running statistics are not the training images' (a frozen backbone keeps ImageNet's) is not
    # moved off what the head learned (edgetl.adapt.norm); one extra pass over as many training images as there
    # are adaptation images. none: plain AdaBN. Measured in benchmarks/reported/shift_*.json.
    anchor: Literal["source", "none"] = "source"
    max_images: int | None = Field(default=None, ge=1)  # a seeded sample of this many; None: every image
    batch_size: int = Field(default=32, ge=2)  # BatchNorm needs two images per batch to have a variance
    # TENT: SGD with momentum 0.9 on gamma/beta, as the paper; its ImageNet rate (2.5e-4 at batch 64) barely moves
    # a model in the few passes a folder of ~100 images gives, so the default is the paper's CIFAR-scale 1e-3
    tent_lr: float = Field(default=1e-3, gt=0)
    tent_epochs: int = Field(default=1, ge=1)
    seed: int = 0


class FallbackConfig(_Section):
    """Accuracy-aware int8 (``edgetl.quant.sensitivity``): when the int8 model misses the target's
    ``max_accuracy_drop`` on the validation split, revert its most sensitive layers to float one at a time."""

    enabled: bool = False  # opt-in: ranking reverts every layer once (on a subset of val: rank_images)
    # The cap: at most this many conv/linear layers in float. 5 is under 10 % of an EfficientNet-Lite0's 50,
    # beyond which int8 loses most of its speed on these CPUs (every float island adds a dequantize/quantize pair).
    max_float_layers: int = Field(default=5, ge=0)
    # The second cap: the most latency the float layers may add over the all-int8 model, as a fraction (0.2: 20 %
    # slower), batch 1 in ONNX Runtime on the build host (interleaved rounds). None: no latency cap. Either way,
    # each fallback step's latency is measured for the report's step curve once the loop reverts anything.
    max_latency_increase: float | None = Field(default=None, ge=0)
    # Ranking cost: each layer is screened by the logit error its revert removes on this many val images (those
    # where int8 is furthest from float; a squared error is dominated by them), and only the best confirm_layers
    # get a whole-val pass for their accuracy gain. None: every layer on the whole split (exact, one pass per
    # layer). The budget decision is never taken on the subset: every fallback step is validated on all of val.
    # Measured in benchmarks/reported/accuracy_aware.json (exact vs screened ranking on the digits demo).
    rank_images: int | None = Field(default=64, ge=1)
    confirm_layers: int = Field(default=10, ge=0)  # 2x max_float_layers: room for the proxy to misorder


class QuantizeConfig(_Section):
    qat: bool = True
    ptq_baseline: bool = True  # run post-training quantization beside QAT, to show what QAT buys
    calibration_images: int = Field(default=256, ge=1)  # PTQ: training images (seeded sample), eval preprocessing
    qat_epochs: int = Field(default=2, ge=1)
    # QAT recipe (measured; see docs/design.md): activation ranges calibrated as PTQ does (histogram, the
    # calibration images) and then fixed, weight ranges following the weights, BatchNorm folded with its running
    # statistics and frozen from the start, AdamW cosine-decayed from qat_lr, the best epoch on validation kept.
    qat_lr: float = Field(default=1e-4, gt=0)
    freeze_bn_at: float = Field(default=0.0, ge=0, le=1)  # fraction of QAT steps before BatchNorm statistics freeze
    keep_first_fp: bool = False  # keep the stem conv in float
    keep_last_fp: bool = False  # keep the classifier in float
    max_steps_per_epoch: int | None = Field(default=None, ge=1)  # cap for quick runs and tests
    seed: int = 0  # QAT data order and the PTQ calibration sample
    # Skip QAT when the PTQ model's top-1 on val is already within the target's max_accuracy_drop of fp32 (ptq_baseline
    # must be on; a target without that budget always runs QAT). Measured (benchmarks/reported/quantize_speed.json):
    # on hymenoptera PTQ matched fp32 and QAT kept its untrained epoch 0, so its epochs cost most of the stage and
    # changed nothing; on the digits demo PTQ missed the budget and QAT still runs.
    skip_qat_within_budget: bool = True
    # Stop QAT after the first trained epoch whose converted candidate is within the target's max_accuracy_drop of
    # fp32 on val (a target without that budget runs every epoch). Measured (benchmarks/reported/quantize_speed.json,
    # digits demo, 2 QAT epochs): QAT kept epoch 1 (val 92.20 % vs fp32 92.48 %), so epoch 2 and its judging cost
    # about a quarter of the stage and shipped nothing.
    qat_stop_within_budget: bool = True
    # Where the stage scores int8 models (each QAT candidate epoch on val, the PTQ model that decides whether QAT
    # runs, and both on the evaluation split): "onnxruntime" (the model's ONNX QDQ export in ONNX Runtime's int8
    # kernels, as the export stage writes it) or "torch" (torch's reference quantized ops, which emulate int8 in
    # float and cost more than the float model). Measured in benchmarks/reported/quantize_speed.json.
    qat_judge: Literal["onnxruntime", "torch"] = "onnxruntime"
    # PTQ: shift each quantized layer's float bias so its mean output per channel matches the float model's on the
    # calibration images, layer after layer (NNCF's bias correction, on the PT2E graph: edgetl/quant/bias.py). QAT
    # learns its own biases. Measured on the digits demo model (warm-up recipe, test, all int8): ONNX Runtime
    # 87.50 -> 91.67 %, OpenVINO 87.96 -> 90.74 % (benchmarks/reported/accuracy_aware.json step0, docs/design.md);
    # hymenoptera unchanged (95.42 %, already lossless).
    bias_correction: bool = True
    # how many of the calibration images it averages over (None: all of them); its cost grows with images x pixels
    bias_correction_images: int | None = Field(default=None, ge=1)
    # int8 weight range: "full" -127..127, or "reduced" -63..63 for x86 CPUs without VNNI/AMX, whose u8 x s8 kernels
    # (vpmaddubsw) saturate at full range (edgetl/quant/quantizer.py); depthwise convs, which do not saturate,
    # keep -127..127 either way (benchmarks/reported/avx2_saturation.json). Measured on an AVX2-only host, lite0 PTQ on
    # digits, val: full: torch 88.6 %, ONNX Runtime 71.0 %; reduced: torch 79.4 %, ONNX Runtime 81.6 %. "auto":
    # reduced only where the model will run on this very host (a target whose device is the build host) and the
    # host lacks VNNI/AMX; full elsewhere (a device's runtime is not this host's kernels; VNNI hosts are exact).
    weight_range: Literal["auto", "full", "reduced"] = "auto"
    fallback: FallbackConfig = FallbackConfig()


class ExportConfig(_Section):
    opset: int | None = Field(default=None, ge=13)  # None: the target's opset
    min_top1_agreement: float = Field(default=0.99, ge=0, le=1)
    # Largest logit difference allowed between an artifact and its torch model. int8 kernels round differently
    # per runtime and per batch size, so its bound is looser.
    max_logit_diff_fp32: float = Field(default=1e-2, gt=0)
    max_logit_diff_int8: float = Field(default=1.5, gt=0)
    # int8 top-1 agreement counts a flip as agreeing when the torch reference's two top logits were closer than
    # this (a near-tie that integer rounding can tip either way); both figures are recorded. Measured on
    # hymenoptera QAT: ONNX Runtime's int8 kernels move logits by up to 0.165 and flipped 2 of 153 images, whose
    # reference margins were 0.071 and 0.165 (the median margin is 2.8).
    tie_margin_int8: float = Field(default=0.25, ge=0)
    parity_images: int | None = Field(default=None, ge=1)  # None: the whole evaluation split
    # Beside each image model, a variant whose graph takes the resized/cropped RGB pixels as uint8 NHWC and does
    # the /255, mean/std and NCHW layout change itself, so device code feeds camera frames without rewriting the
    # normalisation (the bundle ships it and its README's C++ feeds it). On by default: five nodes prepended to
    # the exported graph and one more parity pass over the evaluation split per artifact.
    uint8_input: bool = True
    # Text encoders (BERT-class): also a dynamic int8 model per runtime, int8 weights with activations quantized
    # at run time: ONNX Runtime's of the transformer-fused graph (``onnx-int8-dynamic``: QAttention,
    # DynamicQuantizeMatMul, an int8 embedding table) and OpenVINO's (``openvino-int8-dynamic``: int8 weights on
    # every linear layer and embedding table, activations in groups of 128 channels). Measured on SST-2
    # (benchmarks/reported/text_sst2.json; fp32 89.95 %): ONNX Runtime 89.46 %, OpenVINO 90.01 %, where the static
    # QDQ models lose about 3 points. The bundle ships, per format, the int8 route most accurate on val.
    text_dynamic_int8: bool = True


class BenchConfig(_Section):
    warmup: int | None = Field(default=None, ge=0)  # None: the target's setting (likewise below)
    min_iterations: int | None = Field(default=None, ge=1)
    min_time_s: float | None = Field(default=None, ge=0)
    rounds: int | None = Field(default=None, ge=1)  # timing rounds per row, interleaved (see targets.BenchmarkSpec)
    threads: int | None = Field(default=None, ge=1)
    batch_sizes: tuple[int, ...] | None = None
    accuracy: bool = True  # also measure accuracy on the evaluation split
    # Batch size of the accuracy pass. 1 is what most edge applications run, and int8 kernels round differently
    # per batch size (ONNX Runtime), so the stated accuracy is the deployed one.
    eval_batch_size: int = Field(default=1, ge=1)
    keep_samples: int = Field(default=1000, ge=0)  # per-iteration latencies kept in results.json for the plots
    # Regression gate (`edgetl bench --baseline`): a p50 latency rise above this percentage, or a top-1 drop
    # above these accuracy points, fails. 10 % sits above the run-to-run noise of a quiet machine.
    max_latency_regression: float = Field(default=10.0, ge=0)
    max_accuracy_drop: float = Field(default=0.5, ge=0)
    # A real target device to measure on as well (ssh://..., or a mapping: url, python, identity_file,
    # ssh_config, connect_timeout_s, timeout_s); None: the target profile's `device:`, if any.
    device: DeviceSpec | None = None


class BuildConfig(_Section):
    target: str = "cpu"
    out: str = "runs/default"
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    prune: PruneConfig = PruneConfig()
    adapt: AdaptConfig = AdaptConfig()
    quantize: QuantizeConfig = QuantizeConfig()
    export: ExportConfig = ExportConfig()
    bench: BenchConfig = BenchConfig()
    budget_check: bool = True

    def with_overrides(self, overrides: dict[str, Any]) -> BuildConfig:
        """Apply dotted overrides, e.g. ``{"train.epochs": 3, "data.path": "x"}``; ``None`` values are ignored."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            node[leaf] = value
        return _validate(data, "command-line options")


def _validate(data: dict[str, Any], source: str) -> BuildConfig:
    from edgetl.targets import format_validation_error

    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc), hint="see `edgetl build --help`") from exc


def load_build_config(path: str | Path | None = None) -> BuildConfig:
    """Load a build config from YAML (or the defaults when ``path`` is None)."""
    if path is None:
        return BuildConfig()
    p = Path(path)
    shipped = Path(__file__).resolve().parent / "configs" / f"{path}.yaml"
    if not p.exists() and shipped.is_file():  # a shipped config by name: `--config demo`
        p = shipped
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {p} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: malformed YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    return _validate(raw, str(p))
