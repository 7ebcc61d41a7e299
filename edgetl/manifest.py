"""Stage manifests: what a stage consumed and produced, so the next stage reads facts instead of guessing paths."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgetl import __version__
from edgetl.errors import ModelFileError
from edgetl.fsutil import read_json, sha256_file, sha256_json, write_json

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1

_TRACKED_PACKAGES = (
    "torch", "torchvision", "torchao", "timm", "onnx", "onnxruntime", "openvino", "nncf", "numpy", "scikit-learn",
)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose change can change a stage's output."""
    versions = {"python": platform.python_version(), "edgetl": __version__}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class Manifest(BaseModel):
    """Written as ``manifest.json`` beside every stage's outputs."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = MANIFEST_SCHEMA
    stage: str
    edgetl_version: str = __version__
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    input_hash: str = ""  # hash of everything the stage's output depends on; equal hash => reusable
    config: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)  # name -> sha256 of upstream files / manifests
    outputs: dict[str, str] = Field(default_factory=dict)  # relative file name -> sha256
    versions: dict[str, str] = Field(default_factory=library_versions)
    info: dict[str, Any] = Field(default_factory=dict)  # stage-specific facts: labels, input shape, mean/std, ...
    command: str = Field(default_factory=lambda: " ".join(sys.argv))

    def write(self, stage_dir: str | Path) -> Path:
        return write_json(Path(stage_dir) / MANIFEST_NAME, self.model_dump(mode="json"))

    @property
    def hash(self) -> str:
        """Hash identifying this manifest's content (used as the 'source' hash in exported models)."""
        return sha256_json(self.model_dump(mode="json", exclude={"created", "command"}))

    def output_path(self, stage_dir: str | Path, name: str) -> Path:
        if name not in self.outputs:
            raise ModelFileError(f"{Path(stage_dir) / MANIFEST_NAME} lists no output {name!r}")
        return Path(stage_dir) / name

    def verify_outputs(self, stage_dir: str | Path) -> list[str]:
        """Names of outputs that are missing or whose sha256 no longer matches."""
        bad = []
        for name, digest in self.outputs.items():
            path = Path(stage_dir) / name
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(name)
        return bad


def hash_outputs(stage_dir: str | Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(Path(stage_dir) / name) for name in names}


def read_manifest(stage_dir: str | Path) -> Manifest:
    path = Path(stage_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelFileError(
            f"no {MANIFEST_NAME} in {stage_dir}",
            hint="run the stage that produces it first (or `edgetl build`), or pass the right directory",
        )
    try:
        return Manifest.model_validate(read_json(path))
    except Exception as exc:  # json decode or validation: both mean the file cannot be trusted
        raise ModelFileError(f"{path} is corrupt or from an incompatible edgetl version: {exc}") from exc


class InputVariant(BaseModel):
    """A variant of an exported model whose graph takes raw ``uint8`` NHWC pixels and preprocesses them itself
    (``edgetl.export.uint8_input``); checked against the float-input model it came from."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "uint8_nhwc"
    path: str  # relative to the stage directory, as Artifact.path
    size_bytes: int
    io: dict[str, Any]  # the variant's ModelIO (dump): input uint8, N x H x W x C; outputs as the artifact's
    preprocessing: dict[str, Any]  # what its graph does, and what the caller still does (resize, crop)
    int8_ops: int | None = None
    float_ops: int | None = None
    parity: dict[str, Any] = Field(default_factory=dict)  # against the float-input artifact, same runtime


class Artifact(BaseModel):
    """One exported model file, as listed in ``OUT/export/manifest.json`` (``info["artifacts"]``)."""

    model_config = ConfigDict(extra="forbid")

    name: str  # e.g. "onnx-fp32", "onnx-int8-qat", "openvino-int8-ptq"
    format: str  # onnx | openvino | torch | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    source: str  # fp32 | qat | ptq : which torch model it came from
    path: str  # relative to the stage directory (for openvino: the .xml; the .bin lies beside it)
    size_bytes: int
    int8_ops: int | None = None  # convolutions/matmuls that run in int8 in the runtime's optimised graph
    float_ops: int | None = None  # those that still run in float
    float_op_names: list[str] = Field(default_factory=list)  # and which, with the reason where known
    parity: dict[str, Any] = Field(default_factory=dict)  # {"runtime", "top1_agreement", "max_logit_diff", "n"}
    uint8_variant: InputVariant | None = None  # the same model taking raw camera pixels (image tasks)
