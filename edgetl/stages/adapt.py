"""Stage ``adapt``: the current float model adapted to unlabelled images of the deployment domain.

Input: the current float model artifact (fine-tuning's or pruning's) and ``data.adapt``, a folder of unlabelled
images from the device's domain (camera, lighting, scanner). The image files are checked like training images, a
seeded sample of ``adapt.max_images`` is taken, and any that is byte-identical to a val or test image is an error:
adaptation images are never evaluated on. ``adapt.method`` runs from ``edgetl.adapt``: AdaBN (BatchNorm statistics
re-estimated on the images) or TENT (BatchNorm affine parameters trained to minimise prediction entropy, then
AdaBN). The images get the deployment preprocessing (the model card's), as the device will feed them.

Output: ``model.pt``, a float model artifact whose card names the adapted artifact as its parent and records the
method and the image count (``metrics.adaptation``); ``adapt_images.json``, the images used, which int8
calibration then uses in place of training images; ``manifest.json`` with val and evaluation-split accuracy before
and after. quantize, export, bench and bundle take it as the current float model.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError
from edgetl.fsutil import atomic_dir, read_json, sha256_json, write_json
from edgetl.manifest import Manifest, hash_outputs, library_versions
from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.adapt")

STAGE = "adapt"
MODEL_NAME, IMAGES_NAME = "model.pt", "adapt_images.json"


@dataclass(frozen=True)
class AdaptResult:
    """What ``adapt`` produced (accuracies top-1 in 0..1 on labelled splits; never on the adaptation images)."""

    out_dir: Path
    model_path: Path
    method: str
    images: int
    eval_split: str
    before: dict[str, float]  # split -> accuracy of the unadapted model
    after: dict[str, float]
    wall_time_s: float


def input_hash(cfg: BuildConfig, source: Manifest, images: dict[str, str]) -> str:
    return sha256_json({"source": source.hash, "adapt": cfg.adapt.model_dump(mode="json"),
                        "images": sorted(images.values()), "versions": library_versions()})


def adaptation_samples(stage_dir: Path, card_metrics: dict[str, Any]) -> list[tuple[str, int]] | None:
    """The adaptation images an adapted artifact recorded (for int8 calibration), or None when it is not one."""
    if not card_metrics.get("adaptation"):
        return None
    path = Path(stage_dir) / IMAGES_NAME
    return [(ref, -1) for ref in read_json(path)["images"]] if path.is_file() else None


def adapt(cfg: BuildConfig, target: TargetProfile, model_dir: Path, out_dir: Path) -> AdaptResult:
    """Adapt the float model artifact in ``model_dir`` to ``cfg.data.adapt``'s images, into ``out_dir``.

    Raises:
        ConfigError: no ``data.adapt``, a task other than images, a model without BatchNorm layers.
        DataError: a missing, empty or unreadable folder; adaptation images that are also evaluation images.

    Example:
        >>> adapt(cfg.with_overrides({"data.adapt": "device_images/"}), load_target("cpu"), Path("runs/x/train"),
        ...       Path("runs/x/adapt"))
    """
    import torch

    from edgetl.adapt import adabn, tent
    from edgetl.data.unlabelled import refuse_evaluation_overlap, scan_unlabelled
    from edgetl.stages.quantize import read_float_model

    started = time.perf_counter()
    a = cfg.adapt
    if cfg.data.adapt is None:
        raise ConfigError("the adapt stage needs data.adapt, a folder of unlabelled deployment images",
                          hint="pass --adapt-data DIR or set data.adapt in the config")
    inputs = read_float_model(Path(model_dir))
    source, task, index = inputs.artifact, inputs.task, inputs.index
    if task.name != "image_classification":
        raise ConfigError(f"domain adaptation (data.adapt) adapts BatchNorm layers of image models; this is a "
                          f"{task.name} model", hint="drop data.adapt / --adapt-data for this build")
    images = scan_unlabelled(cfg.data.adapt, strict=cfg.data.strict, limit=a.max_images, seed=a.seed)
    refuse_evaluation_overlap(images, index.splits)
    log.info("adapting %s to %d unlabelled image(s) from %s (%s)", source.ref, len(images.refs), images.folder,
             a.method)

    model = source.load()
    preprocess = inputs.preprocess

    def batches() -> Any:
        for x, _ in task.eval_batches(images.samples(), preprocess, a.batch_size):
            yield tuple(torch.from_numpy(v) for v in x.values())

    anchor = None
    if a.anchor == "source":  # as many training images as adaptation images, seeded (edgetl.adapt.norm)
        train = list(index.splits.get("train", []))
        random.Random(a.seed).shuffle(train)
        train = train[:len(images.refs)]
        if len(train) < 2:
            raise ConfigError(f"adapt.anchor source needs training images to anchor to; the split has {len(train)}",
                              hint="set adapt.anchor none (plain AdaBN)")
        anchor = [tuple(torch.from_numpy(v) for v in x.values())
                  for x, _ in task.eval_batches(train, preprocess, a.batch_size)]
    labelled = {s: index.splits[s] for s in dict.fromkeys(("val", index.eval_split)) if index.splits.get(s)}
    before = {s: _accuracy(model, task, samples, preprocess) for s, samples in labelled.items()}
    adapted = copy.deepcopy(model)
    with torch.enable_grad():
        report = (adabn(adapted, batches(), anchor) if a.method == "adabn"
                  else tent(adapted, batches, a.tent_epochs, a.tent_lr, source=anchor))
    after = {s: _accuracy(adapted, task, samples, preprocess) for s, samples in labelled.items()}
    for s in labelled:
        log.info("%s top-1: %.2f%% before adaptation, %.2f%% after", s, 100 * before[s], 100 * after[s])
    return _finish(cfg, target, inputs, adapted, images, report, before, after, out_dir, started)


def _accuracy(model: Any, task: Any, samples: list[Any], preprocess: dict[str, Any]) -> float:
    from edgetl.stages.quantize import torch_accuracy

    return torch_accuracy(model.eval(), list(task.eval_batches(samples, preprocess, 64)))


def _finish(cfg: BuildConfig, target: TargetProfile, inputs: Any, model: Any, images: Any, report: Any,
            before: dict[str, float], after: dict[str, float], out_dir: Path, started: float) -> AdaptResult:
    from dataclasses import asdict

    from edgetl.artifacts import Lineage, save_module

    source, card, index = inputs.artifact, inputs.artifact.card, inputs.index
    out_dir = Path(out_dir)
    wall = round(time.perf_counter() - started, 2)
    adaptation = {"method": report.method, "images": report.images, "folder": images.folder,
                  "batchnorm_layers": report.layers, "found": images.found, "skipped": len(images.skipped),
                  "anchored_to_training_images": report.source_images}
    with atomic_dir(out_dir) as tmp:
        save_module(model, tmp / MODEL_NAME)
        write_json(tmp / IMAGES_NAME, {"folder": images.folder, "images": images.refs,
                                       "sha256": [images.digests[r] for r in images.refs]})
        new_card = card.model_copy(update={
            "name": "adapted", "file": MODEL_NAME, "kind": "module",
            "lineage": Lineage(stage=STAGE, method=report.method, parent=source.ref,
                               parent_manifest=source.manifest.hash),
            "data_split": str(Path("..") / source.stage_dir.name / card.data_split) if card.data_split else None,
            "metrics": {"eval_split": index.eval_split, "eval_accuracy": after.get(index.eval_split),
                        "adaptation": adaptation},
        })
        Manifest(
            stage=STAGE,
            input_hash=input_hash(cfg, source.manifest, images.digests),
            config={"adapt": cfg.adapt.model_dump(mode="json"), "data.adapt": cfg.data.adapt,
                    "target": target.name},
            inputs={f"{source.stage_dir.name}/manifest.json": source.manifest.hash},
            outputs=hash_outputs(tmp, [MODEL_NAME, IMAGES_NAME]),
            info={
                "models": [new_card.model_dump(mode="json")],
                "source": source.ref, "backbone": card.backbone, "classes": list(card.classes),
                "preprocess": dict(card.preprocess), "adaptation": adaptation, "report": asdict(report),
                "accuracy_before": before, "accuracy_after": after, "eval_split": index.eval_split,
                "evaluated_on_adaptation_images": False, "wall_time_s": wall,
            },
        ).write(tmp)
    return AdaptResult(out_dir, out_dir / MODEL_NAME, report.method, report.images, index.eval_split, before, after,
                       wall)
