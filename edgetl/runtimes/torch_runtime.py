"""PyTorch eager: the fine-tuned checkpoint (``OUT/train/model.pt``) as the fp32 reference row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgetl.runtimes.base import Runtime, Session


class TorchSession(Session):
    def __init__(self, path: Path, device: str, precision: str, threads: int | None) -> None:
        import torch

        from edgetl.backbones import load_checkpoint

        ckpt = load_checkpoint(path)  # ModelFileError for a missing or corrupt file
        self._torch = torch
        self._device = torch.device(device)
        self._model = ckpt.build_model().to(self._device).eval()
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self._previous_threads = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.input_shape = (None, 3, ckpt.image_size, ckpt.image_size)
        self.settings: dict[str, Any] = {
            "device": device, "num_threads": self.threads, "autocast": str(self._dtype) if self._dtype else None,
            "mode": "eager, inference_mode",
        }

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device)
            if self._dtype is not None:
                with torch.autocast(self._device.type, dtype=self._dtype):
                    y = self._model(x)
            else:
                y = self._model(x)
            if self._device.type == "cuda":
                torch.cuda.synchronize()
            return y.float().cpu().numpy()

    def close(self) -> None:
        self._torch.set_num_threads(self._previous_threads)


class Torch(Runtime):
    name = "torch"
    formats = ("torch",)
    install_hint = "pip install torch (a CUDA build for the cuda device)"

    def devices(self) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        return TorchSession(path, device, precision, threads)
