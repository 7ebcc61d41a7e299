"""Quantization: edgetl's own PT2E quantizer (uint8 activations, int8 per-channel weights)."""

from edgetl.quant.quantizer import QuantizerOptions, count_quantized_layers, make_quantizer

__all__ = ["QuantizerOptions", "count_quantized_layers", "make_quantizer"]
