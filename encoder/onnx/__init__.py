"""The encoder as ONNX: export, graph rewrites, int8 quantization, accuracy reports and the
ONNX Runtime embedder that serves the artifacts."""
