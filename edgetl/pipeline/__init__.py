"""The build engine: stages as registry entries with one contract, cached by input hash and resumable."""

from edgetl.pipeline.engine import BuildResult, StageOutcome, build

__all__ = ["BuildResult", "StageOutcome", "build"]
