"""Target profiles: one YAML file per device in ``edgetl/targets/`` (shipped as package data), loaded into a frozen,
validated ``TargetProfile``.

A user's own file works anywhere a name does (``--target ./my-board.yaml``) and may ``extends:`` a shipped profile
(by name or path), overriding fields; mappings merge key by key, lists and scalars replace.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgetl.errors import ConfigError
from edgetl.registry import Registry

Precision = Literal["fp32", "fp16", "bf16", "int8"]

TARGETS_DIR_ENV = "EDGETL_TARGETS_DIR"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hardware(_Frozen):
    cpu: str = Field(description="CPU model, e.g. '6-core Arm Cortex-A78AE'")
    cpu_arch: Literal["x86_64", "aarch64", "armv7l"]
    cpu_cores: int = Field(gt=0)
    memory_gb: float = Field(gt=0)
    accelerator: Literal["none", "gpu", "igpu", "npu"]
    accelerator_name: str = ""
    peak_int8_tops: float | None = Field(default=None, ge=0, description="published dense int8 TOPS")
    peak_fp16_tflops: float | None = Field(default=None, ge=0, description="published dense fp16 TFLOPS")
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0)
    power_w: tuple[float, float] | None = Field(default=None, description="[min, max] power envelope in watts")


class RuntimeSpec(_Frozen):
    runtime: str = Field(description="a registered runtime adapter: torch, onnxruntime, openvino, tensorrt")
    device: str = Field(description="onnxruntime: execution provider; openvino: CPU/GPU/NPU; torch: cpu/cuda")
    precisions: tuple[Precision, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_capability(self) -> RuntimeSpec:
        from edgetl.runtimes import RUNTIMES  # import-light: no runtime library is imported

        if self.runtime not in RUNTIMES:
            raise ValueError(RUNTIMES.unknown_message(self.runtime) + f" (known: {', '.join(RUNTIMES.names())})")
        devices = RUNTIMES.get(self.runtime).capabilities
        if self.device not in devices:
            raise ValueError(f"runtime {self.runtime} has no device {self.device!r}; expected one of {sorted(devices)}")
        unsupported = [p for p in self.precisions if p not in devices[self.device]]
        if unsupported:
            raise ValueError(
                f"runtime {self.runtime} on {self.device} cannot run {', '.join(unsupported)}; "
                f"it runs {sorted(devices[self.device])}"
            )
        return self

    @property
    def label(self) -> str:
        return f"{self.runtime}:{self.device}"


class InputSpec(_Frozen):
    image_size: int = Field(ge=16, le=1024)
    channels: Literal[1, 3] = 3
    batch_sizes: tuple[int, ...] = Field(default=(1,), min_length=1)
    dynamic_batch: bool = True

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(b < 1 for b in v):
            raise ValueError("batch sizes must be >= 1")
        return v


class ExportSpec(_Frozen):
    formats: tuple[Literal["onnx", "openvino"], ...] = Field(min_length=1)
    opset: int = Field(default=20, ge=13, le=23)  # per-channel QDQ needs >= 13; the dynamo exporter emits 18+


class Budgets(_Frozen):
    p90_latency_ms: float | None = Field(default=None, gt=0)
    model_size_mb: float | None = Field(default=None, gt=0)
    peak_memory_mb: float | None = Field(default=None, gt=0)
    max_accuracy_drop: float | None = Field(default=None, ge=0, description="int8 vs fp32, in accuracy points")


class BenchmarkSpec(_Frozen):
    warmup: int = Field(default=10, ge=0)
    min_iterations: int = Field(default=50, ge=1)
    min_time_s: float = Field(default=1.0, ge=0)
    # Timing rounds per row, the rows interleaved (A B C A B C ...); min_iterations and min_time_s are shared
    # out over them, so more rounds cost no more timed runs. 5: the fewest whose min-max interval of round
    # medians covers the median round with over 90 % confidence (1 - 2**-4 = 93.75 %), and with 5 rounds a side
    # the gate calls a regression only when all 5 rounds of the new run are slower than all 5 of the baseline,
    # which chance alone does 1 time in 252.
    rounds: int = Field(default=5, ge=1)
    threads: int | None = Field(default=None, ge=1, description="None: the runtime's default (all cores)")


class DeviceSpec(_Frozen):
    """How to reach a real instance of the target over SSH, so ``edgetl bench`` / ``build`` measure on it.

    In YAML either the address alone (``device: ssh://pi@rpi5.local``) or a mapping with the fields below.
    Keys or an ssh-agent only: the address may carry no password (``edgetl.execution.ssh``).
    """

    url: str = Field(description="ssh://[user@]host[:port][/workdir]; host may be a ~/.ssh/config alias")
    python: str = Field(default="python3", description="the device's interpreter (with numpy and the runtime)")
    identity_file: str | None = Field(default=None, description="private key file (ssh -i); None: ssh's own")
    ssh_config: str | None = Field(default=None, description="ssh -F file instead of ~/.ssh/config")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP connect + SSH handshake")
    # the whole device run (copying, every row, results back); each row also stops after its own limit
    timeout_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data

    @field_validator("url")
    @classmethod
    def _parse(cls, v: str) -> str:
        from edgetl.execution.ssh import DeviceAddress  # standard library only

        try:
            DeviceAddress.parse(v)
        except ConfigError as exc:
            raise ValueError(exc.message) from exc
        return v

    def address(self) -> Any:
        """The parsed ``edgetl.execution.ssh.DeviceAddress``."""
        from edgetl.execution.ssh import DeviceAddress

        key = os.path.expanduser(self.identity_file) if self.identity_file else None
        return DeviceAddress.parse(self.url, python=self.python, identity_file=key)


class TargetProfile(_Frozen):
    """A device: what it is, what runs on it, and what a model must achieve there."""

    name: str
    aliases: tuple[str, ...] = ()
    description: str
    hardware: Hardware
    runtimes: tuple[RuntimeSpec, ...] = Field(min_length=1, description="in order of preference")
    input: InputSpec
    export: ExportSpec
    budgets: Budgets = Budgets()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    device: DeviceSpec | None = Field(default=None, description="a reachable instance to measure on (ssh://)")
    source: str = Field(default="", description="file the profile was loaded from (set by the loader)")

    @model_validator(mode="after")
    def _check_consistency(self) -> TargetProfile:
        from edgetl.runtimes import RUNTIMES

        for spec in self.runtimes:
            fmt = RUNTIMES.get(spec.runtime).format
            if fmt != "torch" and fmt not in self.export.formats:
                raise ValueError(f"runtimes name {spec.runtime} but export.formats lacks {fmt!r}")
        return self

    @property
    def precisions(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for spec in self.runtimes:
            for p in spec.precisions:
                seen.setdefault(p, None)
        return tuple(seen)

    @property
    def wants_int8(self) -> bool:
        return "int8" in self.precisions

    @property
    def is_host_cpu(self) -> bool:
        """True when the profile describes a generic host CPU that the build machine itself can stand in for."""
        return self.hardware.accelerator == "none" and self.hardware.cpu_arch == "x86_64"


def targets_dir() -> Path:
    """Shipped profiles: ``$EDGETL_TARGETS_DIR`` or the package's own folder (package data, so a wheel has them)."""
    env = os.environ.get(TARGETS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parent


@lru_cache(maxsize=4)
def _registry(directory: str) -> Registry[Path]:
    registry: Registry[Path] = Registry("target")
    for path in sorted(Path(directory).glob("*.yaml")):
        raw = _read_yaml(path)
        name = raw.get("name", path.stem)
        aliases = tuple(raw.get("aliases") or ())
        try:
            registry.register(str(name), path, aliases=tuple(str(a) for a in aliases))
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return registry


def target_registry() -> Registry[Path]:
    return _registry(str(targets_dir()))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"target file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}", hint="fix the YAML syntax") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or os.sep in ref or "/" in ref


def _resolve_ref(ref: str, relative_to: Path | None = None) -> Path:
    if _looks_like_path(ref):
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None and not path.exists():
            path = relative_to / path
        if not path.is_file():
            raise ConfigError(f"target file {ref} does not exist", hint="pass a shipped name (edgetl targets list)")
        return path
    return target_registry().get(ref)


def _load_raw(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"{path}: 'extends' cycle: {cycle}", hint="remove one of the 'extends' links")
    raw = _read_yaml(path)
    parent_ref = raw.pop("extends", None)
    if parent_ref is None:
        return raw
    if not isinstance(parent_ref, str):
        raise ConfigError(f"{path}: field 'extends': expected a target name or file path, got {parent_ref!r}")
    try:
        parent_path = _resolve_ref(parent_ref, relative_to=path.parent)
    except ConfigError as exc:  # name the file and the field that asked for it
        raise type(exc)(f"{path}: field 'extends': {exc.message}", hint=exc.hint) from exc
    parent = _load_raw(parent_path, (*chain, resolved))
    # a child is a new device: it does not inherit the parent's identity
    parent.pop("aliases", None)
    parent.pop("name", None)
    return _deep_merge(parent, raw)


def format_validation_error(source: str | Path, exc: ValidationError) -> str:
    """One readable line per problem: ``FILE: field 'a.b': message (got X)``."""
    lines = []
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for err in errors:
        here = tuple(err["loc"])
        if any(len(other) > len(here) and other[: len(here)] == here for other in locs):
            continue  # a container error caused by a nested one: the nested message says it better
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        got = err.get("input")
        got_text = "" if err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{source}: field '{loc}': {msg}{got_text}")
    return "\n".join(lines)


def load_target(ref: str | Path) -> TargetProfile:
    """Load a target by shipped name, alias or file path, with ``extends`` applied and every field validated."""
    path = _resolve_ref(str(ref))
    raw = _load_raw(path, ())
    raw.setdefault("name", path.stem)
    raw["source"] = str(path)
    try:
        return TargetProfile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc), hint="see the profile format in README.md") from exc


def list_targets() -> list[TargetProfile]:
    return [load_target(target_registry().get(name)) for name in target_registry().names()]
