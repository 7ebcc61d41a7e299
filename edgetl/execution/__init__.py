"""Where measurement runs: an executor takes planned rows and returns result rows.

``LocalExecutor`` (``edgetl.execution.local``) measures in this process on this host. The SSH transport to a
device (``edgetl.execution.ssh``) and the runner copied to it (``device_runner``, standard library + NumPy + the
runtime only) are the remote half; a remote executor implements the same interface, so the benchmark stage does not
change with where the work runs. Import-light: the transport is imported only when asked for.
"""

from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned

__all__ = ["EvalData", "Executor", "MeasureSettings", "Planned"]
