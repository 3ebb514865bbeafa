"""The names the exporter writes and the ONNX embedder reads: the artifact files of an artifact
directory (default: `onnx/` in the models directory) and the exported graph's inputs and outputs.

Only constants: serving imports this without torch or onnx.
"""

from __future__ import annotations

# Graph inputs: int64, (batch, sequence), both axes dynamic.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Graph outputs: float32, (batch, hidden).
OUTPUT_NAME = "sentence_embedding"  # mean-pooled and L2-normalized
POOLED_NAME = "mean_pooled"  # the same vectors before normalization, for encode(normalize=False)

FP32_FILE = "model.onnx"  # the plain export; int8 is quantized from it
FP32_OPTIMIZED_FILE = "model_optimized.onnx"  # onnxruntime's fusions; served as backend "onnx"
INT8_FILE = "model_int8.onnx"  # served as backend "onnx-int8"
# NNCF's static int8 of the plain export (QDQ ONNX), served as backend "openvino-int8".
OPENVINO_INT8_FILE = "model_openvino_int8.onnx"
# Which backend `auto` serves: the fastest artifact within the gates, measured at export time.
BACKEND_CHOICE_FILE = "backend_choice.json"
MANIFEST_FILE = "manifest.json"  # what the artifacts were built from
# The model directory's config and tokenizer files, without its weights: what serving the
# artifacts needs besides the graph, so an install without the model package (or torch) serves.
MODEL_CONFIG_DIR = "model"

__all__ = [
    "BACKEND_CHOICE_FILE",
    "FP32_FILE",
    "FP32_OPTIMIZED_FILE",
    "INPUT_NAMES",
    "INT8_FILE",
    "MANIFEST_FILE",
    "MODEL_CONFIG_DIR",
    "OPENVINO_INT8_FILE",
    "OUTPUT_NAME",
    "POOLED_NAME",
]
