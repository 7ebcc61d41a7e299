"""Export: ONNX (fp32, int8 QDQ) and OpenVINO IR writers, ONNX graph passes, and the parity checks."""
