"""edgetl: take a pretrained vision backbone to an edge device.

Pipeline: fine-tune -> quantize (QAT + PTQ baseline) -> export (ONNX, OpenVINO IR) -> benchmark -> report -> bundle.
Heavy dependencies (torch, onnxruntime, openvino) are imported where they are used, never here.
"""

__version__ = "0.1.0"
