"""A real ``train/`` directory in seconds: a tiny ImageFolder of colour classes and a briefly trained ``tiny`` net.

Quantize and export tests share one trained model and one quantize run per test session (``quantized_run``).
"""

from __future__ import annotations

from pathlib import Path

CLASSES = {"blue": 12, "green": 12, "red": 12}
SIZE = 32

FAST_QUANTIZE = {
    "train.backbone": "tiny", "train.batch_size": 8, "data.num_workers": 0,
    "quantize.qat_epochs": 1, "quantize.max_steps_per_epoch": 4, "quantize.calibration_images": 16,
    "quantize.qat_lr": 1e-4,
    "quantize.skip_qat_within_budget": False,  # these tests exercise QAT; the skip has tests of its own
}


def fast_config(**overrides):  # type: ignore[no-untyped-def]
    from edgetl.config import BuildConfig

    return BuildConfig().with_overrides({**FAST_QUANTIZE, **overrides})


def make_train_dir(root: Path, steps: int = 60) -> Path:
    """``root/data`` (ImageFolder) and ``root/train`` (model.pt, split.json, manifest.json) for the tiny backbone."""
    import random

    import torch

    from edgetl.backbones import create_model
    from edgetl.config import DataConfig
    from edgetl.data import Preprocess, iter_eval_batches, resolve_dataset
    from tests.conftest import make_image_folder

    data = make_image_folder(root / "data", CLASSES)
    index = resolve_dataset(DataConfig(path=str(data)))
    pp = Preprocess.make(SIZE, 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    torch.manual_seed(0)
    model = create_model("tiny", len(index.classes), weights="none")
    samples = sorted(index.splits["train"])
    random.Random(0).shuffle(samples)  # mixed-class batches: BatchNorm on one-colour batches learns nothing
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in iter_eval_batches(samples, pp, 12)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        images, labels = batches[step % len(batches)]
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return write_float_artifact(root / "train", model, index, pp.model_dump(mode="json"))


def write_float_artifact(stage_dir: Path, model, index, preprocess, stage: str = "train",  # type: ignore[no-untyped-def]
                         backbone: str = "tiny") -> Path:
    """A stage directory holding ``model`` as a float model artifact (module + card), the split and a manifest."""
    from edgetl.artifacts import Lineage, ModelCard, save_module
    from edgetl.data import write_split
    from edgetl.manifest import Manifest, hash_outputs
    from edgetl.tasks import get_task
    from edgetl.tasks.base import ResolvedInput

    stage_dir.mkdir(parents=True, exist_ok=True)
    write_split(index, stage_dir / "split.json")
    save_module(model, stage_dir / "model.pt")
    task = get_task("image_classification")
    io = task.model_io(ResolvedInput(size=preprocess["image_size"], channels=3, batch_sizes=(1,),
                                     dynamic_batch=True), len(index.classes))
    card = ModelCard(name="fp32", file="model.pt", kind="module", task=task.name, backbone=backbone,
                     classes=tuple(index.classes), io=io, preprocess=preprocess,
                     lineage=Lineage(stage=stage, method="test"), data_split="split.json")
    Manifest(stage=stage, outputs=hash_outputs(stage_dir, ["model.pt", "split.json"]),
             info={"models": [card.model_dump(mode="json")], "backbone": backbone, "classes": list(index.classes),
                   "preprocess": preprocess}).write(stage_dir)
    return stage_dir


_CACHE: dict[str, Path] = {}


def quantized_run(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A run directory with train/ and quantize/ (QAT + PTQ), built once per test session."""
    if "run" not in _CACHE:
        from edgetl.stages.quantize import quantize
        from edgetl.targets import load_target

        run = tmp_path_factory.mktemp("quantized-run")
        train = make_train_dir(run)
        quantize(fast_config(), load_target("cpu"), train, run / "quantize")
        _CACHE["run"] = run
    return _CACHE["run"]


def exported_run(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """``quantized_run`` plus export/ (ONNX and OpenVINO, fp32 + int8 QAT/PTQ), built once per test session."""
    if "exported" not in _CACHE:
        from edgetl.stages.export import export
        from edgetl.targets import load_target

        run = quantized_run(tmp_path_factory)
        export(fast_config(), load_target("cpu"), run / "train", run / "quantize", run / "export")
        _CACHE["exported"] = run
    return _CACHE["exported"]


def make_fragile_train_dir(root: Path) -> Path:
    """``make_train_dir``, then one classifier column scaled up 1000x and its feature scaled down to match.

    The float model computes the same logits, but the classifier's per-channel int8 weights now have a scale set
    by that one column, so every other weight rounds to 0: PTQ loses accuracy, and reverting the classifier (alone)
    to float wins it back. A real, measurable sensitivity for the fallback tests.
    """
    import torch

    from edgetl.artifacts import load_module_file
    from edgetl.data import read_split

    train = make_train_dir(root)
    model = load_module_file(train / "model.pt")
    with torch.no_grad():
        bn = model.blocks[2][1]  # the last block's BatchNorm: feature 0 of the pooled vector, before ReLU
        bn.weight[0] /= 1000
        bn.bias[0] /= 1000
        model.classifier.weight[:, 0] *= 1000
    index = read_split(train / "split.json")
    from edgetl.data import Preprocess

    pp = Preprocess.make(SIZE, 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    return write_float_artifact(root / "train", model, index, pp.model_dump(mode="json"))
