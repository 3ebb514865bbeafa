"""The ceiling of the encoder's speed-ups on this CPU: its weight MatMuls, one system at a time.

An encoder layer of all-MiniLM-L6-v2 spends almost all of its FLOPs in six weight MatMuls: Q, K, V
and the attention output (384 -> 384) and the feed-forward pair (384 -> 1536 -> 384). This times
one layer's six, at the token counts of a batch of 32 short (~12 tokens) and 32 long (256 tokens)
texts, for: torch fp32 (what sentence-transformers runs), onnxruntime fp32 MatMul, and
onnxruntime dynamic int8 (per-channel int8 weights, uint8 activations quantized per call: what
`ORTQuantizer` produces). Systems alternate call by call; medians over rounds. Idle threads sleep
in both runtimes (OMP_WAIT_POLICY=PASSIVE; onnxruntime's spinning off).

fp32 against fp32 shows how far an fp32 ONNX graph can beat torch when both run the same GEMMs;
int8 against torch fp32 is the most any dynamic int8 variant can gain on the MatMuls, before
attention, LayerNorm, GELU and tokenization, which int8 does not speed up, dilute it.

    .venv/bin/python bench/bench_matmul.py [--rounds 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (role, in, out) of one layer's weight MatMuls.
LAYER = [
    ("query", 384, 384),
    ("key", 384, 384),
    ("value", 384, 384),
    ("attention output", 384, 384),
    ("FFN up", 384, 1536),
    ("FFN down", 1536, 384),
]
TOKENS = {"32 short texts (12 tok)": 32 * 12, "32 long texts (256 tok)": 32 * 256}


def onnx_matmul(weight: np.ndarray, path: Path, int8: bool, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "one_matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = path.with_name(path.stem + "_int8.onnx")
        quantize_dynamic(path, quantized, per_channel=True, weight_type=QuantType.QInt8)
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Workers sleep between calls, as torch's do under OMP_WAIT_POLICY=PASSIVE (set below): both
    # pay the same wake-up per call.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.disable(logging.INFO)  # onnxruntime.quantization logs every tensor

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench-matmul-"))  # removed at the end
    weights = {
        role: (rng.standard_normal((k, n)) * 0.05).astype(np.float32) for role, k, n in LAYER
    }
    systems = {}
    for role, w in weights.items():
        wt = torch.from_numpy(w)
        systems[("torch fp32", role)] = lambda x, wt=wt: torch.matmul(torch.from_numpy(x), wt)
        path = work / f"{role.replace(' ', '_')}.onnx"
        systems[("ort fp32", role)] = onnx_matmul(w, path, int8=False, threads=args.threads)
        systems[("ort int8", role)] = onnx_matmul(w, path, int8=True, threads=args.threads)
    names = ["torch fp32", "ort fp32", "ort int8"]
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}; {args.threads} threads; {args.rounds} rounds\n")
    print("| tokens | MatMul (in -> out) | " + " | ".join(f"{n} ms" for n in names) + " |")
    print("|---|---|" + "---|" * len(names))
    summary = []
    for label, tokens in TOKENS.items():
        layer_ms = dict.fromkeys(names, 0.0)
        for role, k, n in LAYER:
            x = np.abs(rng.standard_normal((tokens, k))).astype(np.float32)  # GELU-like >= 0
            times: dict[str, list[float]] = {s: [] for s in names}
            for s in names:
                systems[(s, role)](x)  # warm-up
            for r in range(args.rounds):
                for s in names[r % 3 :] + names[: r % 3]:
                    start = time.perf_counter()
                    systems[(s, role)](x)
                    times[s].append(time.perf_counter() - start)
            ms = {s: 1000 * statistics.median(times[s]) for s in names}
            for s in names:
                layer_ms[s] += ms[s]
            cells = " | ".join(f"{ms[s]:.2f}" for s in names)
            print(f"| {tokens} | {role} ({k} -> {n}) | {cells} |")
        gflop = 2 * tokens * sum(k * n for _, k, n in LAYER) / 1e9
        cells = " | ".join(
            f"{layer_ms[s]:.2f} ({gflop / layer_ms[s] * 1000:.0f} GFLOP/s)" for s in names
        )
        print(f"| {tokens} | **one layer, all six** | {cells} |")
        summary.append((label, layer_ms))
    print()
    for label, layer_ms in summary:
        base = layer_ms["torch fp32"]
        print(
            f"{label}: ort fp32 x{base / layer_ms['ort fp32']:.2f}, "
            f"ort int8 x{base / layer_ms['ort int8']:.2f} over torch fp32 on the weight MatMuls"
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
