"""Where measurement runs: an executor takes planned rows and returns result rows.

``LocalExecutor`` measures in this process on this host. A remote executor (a device over SSH) implements the
same interface, so the benchmark stage does not change with where the work runs.
"""

from edgetl.execution.base import EvalData, Executor, MeasureSettings, Planned

__all__ = ["EvalData", "Executor", "MeasureSettings", "Planned"]
