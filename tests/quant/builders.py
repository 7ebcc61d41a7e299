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
}


def fast_config(**overrides):  # type: ignore[no-untyped-def]
    from edgetl.config import BuildConfig

    return BuildConfig().with_overrides({**FAST_QUANTIZE, **overrides})


def make_train_dir(root: Path, steps: int = 60) -> Path:
    """``root/data`` (ImageFolder) and ``root/train`` (model.pt, split.json, manifest.json) for the tiny backbone."""
    import random

    import torch

    from edgetl.backbones import Checkpoint, create_model, save_checkpoint
    from edgetl.config import DataConfig
    from edgetl.data import Preprocess, iter_eval_batches, resolve_dataset, write_split
    from edgetl.manifest import Manifest, hash_outputs
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
    train = root / "train"
    train.mkdir(parents=True, exist_ok=True)
    write_split(index, train / "split.json")
    save_checkpoint(Checkpoint(backbone="tiny", classes=list(index.classes), image_size=SIZE, mean=[0.5] * 3,
                               std=[0.5] * 3, crop_pct=1.0, interpolation="bilinear",
                               state_dict=model.state_dict()), train / "model.pt")
    Manifest(stage="train", outputs=hash_outputs(train, ["model.pt", "split.json"]),
             info={"backbone": "tiny", "classes": list(index.classes),
                   "preprocess": pp.model_dump(mode="json")}).write(train)
    return train


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
