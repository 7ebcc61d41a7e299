"""PyTorch eager: a model artifact (``OUT/train/model.pt``, or any stage's float model) as the fp32 reference row."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError
from edgetl.runtimes.base import Runtime, Session


def _artifact_for(path: Path) -> Any:
    """The model artifact whose file is ``path``, from the manifest beside it (which vouches for its sha256)."""
    from edgetl.artifacts import read_model_artifacts

    for artifact in read_model_artifacts(path.parent):
        if artifact.path.resolve() == path.resolve():
            return artifact
    raise ModelFileError(f"{path} is not listed as a model in {path.parent / 'manifest.json'}",
                         hint="benchmark a run directory, or a model file of an edgetl stage")


class TorchSession(Session):
    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import torch

        artifact = _artifact_for(path)
        self._torch = torch
        self._device = torch.device(device)
        self._model = artifact.load().to(self._device).eval()
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self._previous_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.inputs = {t.name: t.shape for t in artifact.card.io.inputs}
        self.settings: dict[str, Any] = {
            "device": device, "num_threads": self.threads, "autocast": str(self._dtype) if self._dtype else None,
            "mode": "eager, inference_mode",
        }

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.asarray(inputs[name])).to(self._device) for name in self.inputs]
            if self._dtype is not None:
                with torch.autocast(self._device.type, dtype=self._dtype):
                    y = self._model(*args)
            else:
                y = self._model(*args)
            if self._device.type == "cuda":
                torch.cuda.synchronize()
            return y.float().cpu().numpy()

    def close(self) -> None:
        self._torch.set_num_threads(self._previous_threads)


class Torch(Runtime):
    name = "torch"
    formats = ("torch",)
    capabilities = {"cpu": frozenset({"fp32", "bf16"}), "cuda": frozenset({"fp32", "fp16", "bf16"})}
    reduces_precision = True
    install_hint = "pip install torch (a CUDA build for the cuda device)"

    def devices(self) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        return TorchSession(path, device, precision, threads)
