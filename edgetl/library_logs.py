"""Library log lines that tell an edgetl user nothing they can act on: filtered unless ``--verbose``."""

from __future__ import annotations

import logging


class _DropNoise(logging.Filter):
    """The library log lines edgetl hides at INFO (shown with ``--verbose``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # torch 2.14 on torchao 0.18's KernelPreference, once per process: "... Calling register_constant() on
        # Enum subclasses is deprecated ..."; torchao's code to change, not the user's
        return not ("register_constant()" in record.getMessage() and "Enum subclass" in record.getMessage())


def quiet_library_logs() -> None:
    """Filter the library log lines of ``_DropNoise`` unless edgetl logs at DEBUG (``--verbose``). Called before
    torchao is imported (it logs on import): by the CLI's logging setup and by the quantize stage."""
    target = logging.getLogger("torch.utils._pytree")
    present = [f for f in target.filters if isinstance(f, _DropNoise)]
    if logging.getLogger("edgetl").isEnabledFor(logging.DEBUG):
        for f in present:
            target.removeFilter(f)
    elif not present:
        target.addFilter(_DropNoise())
