"""The interface every runtime adapter implements, and the model-file checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError

# Precision names (edgetl's) -> what a runtime calls them. int8 models carry their own Q/DQ: the hint only decides
# the precision of the layers left in float.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class Session(ABC):
    """A loaded model ready to run: ``run(NCHW float32) -> logits``."""

    #: NCHW input shape; ``None`` where a dimension is dynamic (usually the batch).
    input_shape: tuple[int | None, ...]
    #: threads the runtime really uses (None: not reported by the runtime).
    threads: int | None = None
    #: the runtime settings that change the figures, recorded with each result row.
    settings: dict[str, Any]

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits of shape (N, classes) for a float32 NCHW batch."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Free the runtime's resources now rather than at garbage collection."""

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the model accepts, or None when the batch is dynamic (or reshaped on demand)."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) and first > 0 else None


class Runtime(ABC):
    """A runtime adapter: which devices this host offers, and loading a model file on one of them."""

    name: str = ""
    formats: tuple[str, ...] = ()  # artifact formats it consumes: onnx | openvino | torch
    install_hint: str = ""

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices of this runtime present on this host, in edgetl's device names (targets.RUNTIME_DEVICES)."""

    def available(self, device: str) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)`` for running on ``device`` here; never raises."""
        try:
            present = self.devices()
        except ImportError as exc:
            missing = exc.name or str(exc)
            return False, f"{self.name} is not installed (no module {missing!r}); {self.install_hint}"
        except Exception as exc:  # a broken driver or plugin must become a reason, not a crash
            return False, f"{self.name} cannot list its devices: {type(exc).__name__}: {exc}"
        if device in present:
            return True, ""
        return False, f"{self.name} has no {device} device on this host (it has: {', '.join(present) or 'none'})"

    @abstractmethod
    def load(self, path: Path, device: str, precision: str, threads: int | None) -> Session:
        """Load ``path`` on ``device``. Raises ``ModelFileError`` for a corrupt file."""


def check_onnx_file(path: Path) -> None:
    """Raise ``ModelFileError`` when ``path`` is missing, empty, truncated or not an ONNX protobuf."""
    _check_exists(path)
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not a whole ONNX model
        raise ModelFileError(f"{path} is not a readable ONNX model (corrupt or truncated): {exc}",
                             hint="re-export it (edgetl export) or copy it again") from exc
    if not model.graph.input or not model.graph.output:
        raise ModelFileError(f"{path} is an ONNX file without graph inputs/outputs (corrupt or truncated)",
                             hint="re-export it (edgetl export) or copy it again")


def check_openvino_files(path: Path) -> None:
    """Raise ``ModelFileError`` when the IR's .xml or its .bin is missing or empty."""
    _check_exists(path)
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelFileError(f"{path}: its weights file {weights.name} is missing",
                             hint="an OpenVINO IR is an .xml plus a .bin of the same name; copy both")


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file {path} is empty (0 bytes)", hint="re-export it or copy it again")


def short_error(exc: BaseException) -> str:
    """The informative line of a runtime's exception (OpenVINO prefixes source locations and checks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text[:300]


def static_dims(dims: list[Any]) -> tuple[int | None, ...]:
    """Model input dimensions with anything symbolic or non-positive as None."""
    out: list[int | None] = []
    for d in dims:
        out.append(d if isinstance(d, int) and d > 0 else None)
    return tuple(out)
