"""The interface every runtime adapter implements, and the model-file checks they share.

An adapter states what it can do (``formats``, ``capabilities``: device -> precisions, ``reduces_precision``);
target validation, benchmark planning, budgets, the bundle and the report read those facts from here, and the
export stage's parity check runs through the same adapters' sessions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.errors import ModelFileError

# Precision names (edgetl's) -> what a runtime calls them. int8 models carry their own Q/DQ: the hint only decides
# the precision of the layers left in float.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass
class OpCount:
    """Compute layers (convolutions, matmuls) of a runtime's executable graph, by the precision they run in."""

    int8: dict[str, int] = field(default_factory=lambda: {"conv": 0, "matmul": 0})
    float: dict[str, int] = field(default_factory=lambda: {"conv": 0, "matmul": 0})
    float_names: dict[str, list[str]] = field(default_factory=lambda: {"conv": [], "matmul": []})

    @property
    def int8_total(self) -> int:
        return sum(self.int8.values())

    @property
    def float_total(self) -> int:
        return sum(self.float.values())


class Session(ABC):
    """A loaded model ready to run: ``run({input name: array}) -> the first output``."""

    #: the model's inputs in order: name -> shape, ``None`` where a dimension is dynamic (usually the batch).
    inputs: dict[str, tuple[int | None, ...]]
    #: threads the runtime really uses (None: not reported by the runtime).
    threads: int | None = None
    #: the runtime settings that change the figures, recorded with each result row.
    settings: dict[str, Any]

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The first output (logits, N x classes) for a batch of named inputs."""

    def op_counts(self) -> OpCount | None:
        """Compute layers of the runtime's executable graph by the precision they run in (the int8 proof).

        None where the runtime cannot tell (then an int8 artifact cannot be proven int8 on it).
        """
        return None

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """The first input's shape."""
        return next(iter(self.inputs.values())) if self.inputs else ()

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Free the runtime's resources now rather than at garbage collection."""

    @property
    def fixed_batch(self) -> int | None:
        """The only batch size the model accepts, or None when the batch is dynamic (or reshaped on demand)."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) and first > 0 else None


class Runtime(ABC):
    """A runtime adapter: what it can run, which devices this host offers, and loading a model file."""

    name: str = ""
    formats: tuple[str, ...] = ()  # artifact formats it consumes: onnx | openvino | torch (the first is its own)
    #: device (edgetl's name) -> the precisions the runtime runs there; a target asking for more is rejected
    capabilities: dict[str, frozenset[str]] = {}
    #: runs an fp32 model at a lower float precision (a compile-time hint or autocast)
    reduces_precision: bool = False
    install_hint: str = ""

    @property
    def format(self) -> str:
        """The artifact format this runtime consumes."""
        return self.formats[0]

    def runs(self, artifact_format: str, artifact_precision: str, precision: str) -> bool:
        """Whether an artifact of this format and precision can be run at ``precision`` by this runtime."""
        if artifact_format not in self.formats:
            return False
        if artifact_precision == precision:
            return True
        return precision in ("bf16", "fp16") and artifact_precision == "fp32" and self.reduces_precision

    @abstractmethod
    def devices(self) -> list[str]:
        """Devices of this runtime present on this host, in edgetl's device names (the keys of ``capabilities``)."""

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
