"""Builders for benchmark, report and gate tests: tiny ONNX / IR models and a fake run directory.

The run directory has the layout the real stages write (train/ checkpoint + manifest + split, export/ artifacts +
manifest listing ``Artifact`` entries), built in seconds from the ``tiny`` backbone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASSES = ["blue", "green", "red"]  # sorted, as the ImageFolder index orders them
SIZE = 32


def tiny_model(num_classes: int = 3, seed: int = 0):  # type: ignore[no-untyped-def]
    import torch

    from edgetl.backbones import create_model

    torch.manual_seed(seed)
    return create_model("tiny", num_classes, weights="none").eval()


def export_onnx(model, path: Path, metadata: dict[str, str] | None = None, dynamic: bool = True) -> Path:  # type: ignore[no-untyped-def]
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, SIZE, SIZE)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    torch.onnx.export(model, x, str(path), input_names=["input"], output_names=["logits"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def quantize_onnx(fp32: Path, int8: Path) -> Path:
    """int8 QDQ (per-channel weights, uint8 activations) calibrated on random inputs: a speed/format fixture."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._data = iter([{"input": rng.standard_normal((1, 3, SIZE, SIZE), dtype=np.float32)}
                               for _ in range(4)])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self._data, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return int8


def convert_ir(onnx_path: Path, xml: Path) -> Path:
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def make_run_dir(root: Path, data_root: Path) -> Path:
    """A run directory with train/ (checkpoint, manifest, split) and export/ (4 artifacts, manifest)."""
    from edgetl.config import DataConfig
    from edgetl.data import Preprocess, resolve_dataset
    from edgetl.manifest import Artifact, Manifest, hash_outputs
    from tests.quant.builders import write_float_artifact

    model = tiny_model(len(CLASSES))
    train, export = root / "train", root / "export"
    index = resolve_dataset(DataConfig(path=str(data_root)))
    assert index.classes == CLASSES
    pp = Preprocess.make(SIZE, 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    write_float_artifact(train, model, index, pp.model_dump(mode="json"))

    meta = {"classes": json.dumps(CLASSES), "preprocess": json.dumps(pp.model_dump(mode="json"))}
    fp32 = export_onnx(model, export / "model_fp32.onnx", meta)
    int8 = quantize_onnx(fp32, export / "model_int8_ptq.onnx")
    convert_ir(fp32, export / "openvino" / "model_fp32.xml")
    convert_ir(int8, export / "openvino" / "model_int8_ptq.xml")
    files = {
        "onnx-fp32": ("onnx", "fp32", "fp32", "model_fp32.onnx"),
        "onnx-int8-ptq": ("onnx", "int8", "ptq", "model_int8_ptq.onnx"),
        "openvino-fp32": ("openvino", "fp32", "fp32", "openvino/model_fp32.xml"),
        "openvino-int8-ptq": ("openvino", "int8", "ptq", "openvino/model_int8_ptq.xml"),
    }
    artifacts = [Artifact(name=n, format=f, precision=p, source=s, path=rel,
                          size_bytes=(export / rel).stat().st_size).model_dump(mode="json")
                 for n, (f, p, s, rel) in files.items()]
    outputs = [rel for *_, rel in files.values()]
    outputs += [rel.replace(".xml", ".bin") for rel in outputs if rel.endswith(".xml")]
    from edgetl.artifacts import read_model_artifact

    card = read_model_artifact(train).card
    Manifest(stage="export", outputs=hash_outputs(export, outputs),
             info={"artifacts": artifacts, "task": card.task, "io": card.io.model_dump(mode="json"),
                   "backbone": "tiny", "classes": CLASSES, "preprocess": pp.model_dump(mode="json"),
                   "float_model": "../train/model.pt", "split": "../train/split.json"}).write(export)
    return root


def fast_config(**bench):  # type: ignore[no-untyped-def]
    """A build config whose benchmark settings take milliseconds.

    One timing round unless asked: three runs of a microsecond model shared out over rounds make rounds of one
    run each, whose spread is all noise (the gate would rightly call identical files inconclusive).
    """
    from edgetl.config import BuildConfig

    settings = {"warmup": 1, "min_iterations": 3, "min_time_s": 0.0, "rounds": 1, "threads": 1,
                "batch_sizes": (1, 2), **bench}
    return BuildConfig().with_overrides({f"bench.{k}": v for k, v in settings.items()})
