"""Library log lines that tell an edgetl user nothing they can act on: filtered unless ``--verbose``."""

from __future__ import annotations

import logging


class _DropNoise(logging.Filter):
    """The library log lines edgetl hides at INFO (shown with ``--verbose``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        # torch 2.14 on torchao 0.18's KernelPreference, once per process: "... Calling register_constant() on
        # Enum subclasses is deprecated ..."; torchao's code to change, not the user's
        if "register_constant()" in text and "Enum subclass" in text:
            return False
        # ONNX Runtime's quantization tools, on the root logger at every quantize_dynamic/quantize_static call:
        # "Please consider to run pre-processing before quantization. Refer to example: <url>" (edgetl's export
        # writes the graph those tools read; the advice is for their own command-line users)
        return not ("consider" in text and "pre-processing before quantization" in text)


def quiet_library_logs() -> None:
    """Filter the library log lines of ``_DropNoise`` unless edgetl logs at DEBUG (``--verbose``). Called before
    torchao is imported (it logs on import): by the CLI's logging setup and by the quantize stage."""
    verbose = logging.getLogger("edgetl").isEnabledFor(logging.DEBUG)
    for target in (logging.getLogger("torch.utils._pytree"), logging.getLogger()):  # root: ONNX Runtime's tools
        present = [f for f in target.filters if isinstance(f, _DropNoise)]
        if verbose:
            for f in present:
                target.removeFilter(f)
        elif not present:
            target.addFilter(_DropNoise())
