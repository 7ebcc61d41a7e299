"""Where measurement runs: an executor takes planned rows and returns result rows.

``LocalExecutor`` (``edgetl.execution.local``) measures in this process on this host. ``SshExecutor``
(``edgetl.execution.remote``) measures the target's own runtime rows on a real device over SSH: the transport
(``edgetl.execution.ssh``, the system OpenSSH client) copies the models, the runner (``device_runner``, standard
library + NumPy + the runtime only) and the preprocessed evaluation inputs to a temporary directory there. Both
implement the same interface, so the benchmark stage does not change with where the work runs. Import-light: the
transport is imported only when asked for.
"""

from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned

__all__ = ["EvalData", "Executor", "MeasureSettings", "Planned"]
