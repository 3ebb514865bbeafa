"""Sentences per second of the ONNX backends against sentence-transformers' torch encode.

Systems: sentence-transformers (torch, the reference of every ratio), our `onnx` (fp32, fused) and
`onnx-int8` embedders, and sentence-transformers' own ONNX exports (`backend="onnx"`, fp32, and
`export_dynamic_quantized_onnx_model` with the avx512_vnni config) when they can be produced
offline in this venv (the reason is printed when not: under transformers 5 optimum fails, so run
it from `.venv-export`, where `make bench` puts sentence-transformers 5). Short / medium / long real
texts at batch 1 (one text per call) and 32 (one encode of 32 texts); the systems alternate call by
call in a rotating order, and each figure is the median over rounds (ratios: median of the
per-round ratios). Each system's cosine to sentence-transformers' torch vectors on those texts
(min / mean) is printed too: speed without it means little for int8. Then, in a fresh process per
backend: file size, load time and peak RSS. The load average is printed with the table (2 shared
cores: see NOTES.md).

    .venv-export/bin/python bench/bench_onnx.py [--rounds 5] [--texts 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOWS = {"short (~12 tok)": (10, 14), "medium (~70 tok)": (60, 80)}
REFERENCE = "st-torch"


def pick_workloads(tokenizer, n: int, seed: int = 0) -> dict[str, list[str]]:
    from semsearch.evaluation.corpus import long_texts, real_texts

    pool = list(real_texts(5000))
    lengths = [len(e) for e in tokenizer.encode_batch(pool)]
    rng = random.Random(seed)
    out = {}
    for name, (lo, hi) in WINDOWS.items():
        fits = [t for t, k in zip(pool, lengths, strict=True) if lo <= k <= hi]
        out[name] = rng.sample(fits, n)
    out["long (256 tok)"] = long_texts(n)
    return out


def st_onnx_systems(model_dir: str, work: Path) -> tuple[dict[str, Callable], str]:
    """sentence-transformers' own ONNX backend, fp32 and int8, or why it is unavailable. The
    exports are written into a copy of the model directory under `work`, never into the package."""
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model

        model_dir = str(shutil.copytree(model_dir, work / "model"))
        model = SentenceTransformer(model_dir, device="cpu", backend="onnx")
        model.save_pretrained(model_dir)  # onnx/model.onnx, for the size table
    except Exception as e:  # noqa: BLE001 - any failure here is reported, not fatal
        return {}, f"sentence-transformers backend='onnx' unavailable here: {type(e).__name__}: {e}"
    systems = {"st-onnx": model}
    try:
        export_dynamic_quantized_onnx_model(model, "avx512_vnni", model_dir)
        systems["st-onnx-int8"] = SentenceTransformer(
            model_dir,
            device="cpu",
            backend="onnx",
            model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"},
        )
    except Exception as e:  # noqa: BLE001
        return {"st-onnx": systems["st-onnx"]}, f"st int8 export failed: {e}"
    return systems, ""


def memory_probe(backend: str, threads: int, texts: list[str]) -> dict[str, float]:
    """Load time and peak RSS of one backend, in a fresh process that encodes `texts` (read as JSON
    from stdin, so building the probe corpus does not count in the peak)."""
    code = f"""
import json, sys, time
texts = json.load(sys.stdin)
sys.path.insert(0, {str(ROOT)!r})
t = time.perf_counter()
if {backend!r} == "st-torch":
    import torch; torch.set_num_threads({threads})
    from sentence_transformers import SentenceTransformer
    from semsearch.encoder.model_files import default_model_dir
    m = SentenceTransformer(str(default_model_dir()), device="cpu")
    enc = lambda x: m.encode(x, batch_size=32)
else:
    from semsearch.encoder import load_embedder
    m = load_embedder(backend={backend!r}, threads={threads})
    enc = lambda x: m.encode(x, batch_size=32)
load = time.perf_counter() - t
enc(texts)
# VmHWM, not ru_maxrss: Linux keeps the forking parent's ru_maxrss across exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"load_s": load, "peak_rss_mb": int(hwm) / 1024}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="threads of every system")
    parser.add_argument("--memory-only", action="store_true", help="only sizes, load, peak RSS")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_encoder.py
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    """The tables; sentence-transformers' exports are written under `work`."""

    import torch
    from sentence_transformers import SentenceTransformer

    from semsearch.encoder import load_embedder
    from semsearch.encoder.model_files import default_model_dir
    from semsearch.encoder.onnx.embedder import ARTIFACT_FILES, default_artifact_dir

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model_dir = str(default_model_dir())
    st = SentenceTransformer(model_dir, device="cpu")
    ours = {b: load_embedder(backend=b, threads=args.threads) for b in ("onnx", "onnx-int8")}
    encoders: dict[str, Callable[[list[str], int], object]] = {
        REFERENCE: lambda x, bs: st.encode(x, batch_size=bs, normalize_embeddings=True),
        "onnx": lambda x, bs: ours["onnx"].encode(x, batch_size=bs),
        "onnx-int8": lambda x, bs: ours["onnx-int8"].encode(x, batch_size=bs),
    }
    st_systems, st_note = st_onnx_systems(model_dir, work)
    for name, m in st_systems.items():
        encoders[name] = lambda x, bs, m=m: m.encode(x, batch_size=bs, normalize_embeddings=True)
    names = list(encoders)
    workloads = pick_workloads(ours["onnx"].tokenizer, args.texts)
    table = []
    for wname, texts in ({} if args.memory_only else workloads).items():
        for bs in (1, 32):
            calls = [[t] for t in texts] if bs == 1 else [texts]
            speeds: dict[str, list[float]] = {n: [] for n in names}
            for n in names:  # warm-up
                encoders[n](calls[0], bs)
            for r in range(args.rounds):
                spent = dict.fromkeys(names, 0.0)
                for i, batch in enumerate(calls):
                    k = (r + i) % len(names)
                    for n in names[k:] + names[:k]:  # rotate who goes first
                        start = time.perf_counter()
                        encoders[n](batch, bs)
                        spent[n] += time.perf_counter() - start
                for n in names:
                    speeds[n].append(len(texts) / spent[n])
            row = {"workload": wname, "batch": bs}
            for n in names:
                ratios = [s / ref for s, ref in zip(speeds[n], speeds[REFERENCE], strict=True)]
                row[n] = (statistics.median(speeds[n]), statistics.median(ratios))
            table.append(row)
            print(
                wname,
                bs,
                {n: f"{v[0]:.0f}/s x{v[1]:.2f}" for n, v in row.items() if isinstance(v, tuple)},
                file=sys.stderr,
                flush=True,
            )
    import numpy as np

    from semsearch.encoder.onnx.accuracy import cosine_stats

    mixed = [t for texts in workloads.values() for t in texts]
    reference = np.asarray(encoders[REFERENCE](mixed, 32))
    accuracy = {n: cosine_stats(np.asarray(encoders[n](mixed, 32)), reference) for n in names}
    load_after = os.getloadavg()
    print(
        f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"{args.threads} threads per system, {args.rounds} rounds, {args.texts} texts\n"
    )
    print("| workload | batch | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for row in table:
        cells = [f"{row[n][0]:.0f}/s (x{row[n][1]:.2f})" for n in names]
        print(f"| {row['workload']} | {row['batch']} | " + " | ".join(cells) + " |")
    cells = [f"{accuracy[n]['min']:.4f} / {accuracy[n]['mean']:.5f}" for n in names]
    label = f"cosine to {REFERENCE}, min / mean ({len(mixed)} texts)"
    print(f"| {label} | | " + " | ".join(cells) + " |")
    if st_note:
        print(f"\n{st_note}")
    print(f"\npeak RSS: load, then encode {len(mixed)} texts (all workloads) at batch 32")
    print("\n| backend | file | size MB | load s | peak RSS MB |\n|---|---|---|---|---|")
    files = {
        REFERENCE: Path(model_dir) / "model.safetensors",
        **{b: default_artifact_dir() / f for b, f in ARTIFACT_FILES.items()},
    }
    for backend, path in files.items():
        m = memory_probe(backend, args.threads, mixed)
        print(
            f"| {backend} | {path.name} | {path.stat().st_size / 1e6:.1f} | "
            f"{m['load_s']:.2f} | {m['peak_rss_mb']:.0f} |"
        )
    for path in sorted((work / "model" / "onnx").glob("*.onnx")):  # sizes only
        print(f"| sentence-transformers onnx | {path.name} | {path.stat().st_size / 1e6:.1f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
