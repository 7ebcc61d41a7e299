"""Latency estimates for devices that cannot be measured from here: a roofline over the exported ONNX graph.

``estimate_latency(model, DevicePeaks.from_target(profile))`` gives a labelled estimate with per-layer rows;
``measure_host_peaks()`` measures this host's achievable peaks, which ``benchmarks/roofline_validation.py`` uses to
validate the error band that every estimate is reported with.
"""

from edgetl.estimate.graph import LayerCost, layer_costs
from edgetl.estimate.host_peaks import Figure, HostPeaks, measure_host_peaks
from edgetl.estimate.peaks import DevicePeaks
from edgetl.estimate.roofline import LayerEstimate, RooflineEstimate, estimate_latency, roofline

__all__ = ["DevicePeaks", "Figure", "HostPeaks", "LayerCost", "LayerEstimate", "RooflineEstimate", "estimate_latency",
           "layer_costs", "measure_host_peaks", "roofline"]
