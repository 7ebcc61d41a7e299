"""Model compression methods that work on a plain ``nn.Module``, apart from any runtime or export route."""

from edgetl.compress.prune import PruneGoal, PruneReport, PruneResult, count_macs_params, prune_model

__all__ = ["PruneGoal", "PruneReport", "PruneResult", "count_macs_params", "prune_model"]
