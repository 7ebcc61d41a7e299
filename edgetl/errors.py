"""One error hierarchy; each class carries the CLI exit code it maps to (documented in the README)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1  # a regression gate or a budget failed
EXIT_USAGE = 2  # bad usage or bad input (config, target, data, model file)
EXIT_RUNTIME = 3  # a runtime, export or quantization step failed
EXIT_GATE_INCONCLUSIVE = 4  # the regression gate cannot tell: the latency noise is larger than its threshold
EXIT_INTERRUPTED = 130  # Ctrl-C


class EdgetlError(Exception):
    """Base class of every error edgetl raises on purpose. ``str(err)`` is the one-line user message."""

    exit_code: int = EXIT_RUNTIME

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(EdgetlError):
    """A config file, target profile or option is malformed or inconsistent."""

    exit_code = EXIT_USAGE


class UnknownNameError(ConfigError):
    """A registry lookup failed (target, backbone, runtime, stage)."""


class DataError(EdgetlError):
    """The data set is missing, empty, corrupt or inconsistent."""

    exit_code = EXIT_USAGE


class WeightsError(EdgetlError):
    """Pretrained weights cannot be found or do not fit the architecture."""

    exit_code = EXIT_USAGE


class ModelFileError(EdgetlError):
    """A model file or bundle given to a stage is missing, truncated, corrupt or tampered with."""

    exit_code = EXIT_USAGE


class ExportError(EdgetlError):
    """Export or quantization failed, or an artifact failed its parity check."""

    exit_code = EXIT_RUNTIME


class RuntimeUnavailableError(EdgetlError):
    """A runtime or device is not available on this host; ``hint`` says how to install it."""

    exit_code = EXIT_RUNTIME


class BudgetExceededError(EdgetlError):
    """A target budget or a regression gate was missed; ``table`` holds the rows to print."""

    exit_code = EXIT_GATE_FAILED

    def __init__(self, message: str, *, table: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.table = table


class GateInconclusiveError(EdgetlError):
    """The regression gate could neither pass nor fail a row: its latency noise spans the threshold."""

    exit_code = EXIT_GATE_INCONCLUSIVE

    def __init__(self, message: str, *, table: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.table = table


class DeviceError(EdgetlError):
    """A remote device (``ssh://...``) could not be used: a command failed, timed out or left no result."""

    exit_code = EXIT_RUNTIME


class DeviceUnreachableError(DeviceError):
    """The device's SSH server cannot be reached: unknown host, closed port, no route, connect timeout."""


class DeviceAuthError(DeviceError):
    """The device refused every key offered (edgetl never prompts for or stores a password)."""


class DeviceHostKeyError(DeviceError):
    """The device's host key is unknown or differs from the one in known_hosts."""


class DeviceDiskFullError(DeviceError):
    """The device ran out of disk space (ENOSPC) while files were copied or results written."""


class DeviceRuntimeUnavailableError(RuntimeUnavailableError, DeviceError):
    """Python, NumPy or the runtime a row needs is not installed on the device; ``hint`` says how to install it."""
