"""Unsupervised domain adaptation of a float model to unlabelled images of the deployment domain.

The methods work on any ``nn.Module`` with BatchNorm layers and know nothing of stages, files or runtimes:
``edgetl.stages.adapt`` feeds them batches and writes the artifact.
"""

from edgetl.adapt.norm import AdaptReport, adabn, batchnorm_layers, tent

__all__ = ["AdaptReport", "adabn", "batchnorm_layers", "tent"]
