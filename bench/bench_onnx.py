"""Sentences per second of the ONNX backends against sentence-transformers' torch encode.

Systems: sentence-transformers (torch, the reference of every ratio), our `onnx` (fp32, fused),
`onnx-int8`, `openvino` (f32 and bf16) and `openvino-int8` embedders (the one backend `auto` serves
here is marked), and sentence-transformers' own ONNX exports (`backend="onnx"`, fp32, and
`export_dynamic_quantized_onnx_model` with the avx512_vnni config) when they can be produced
offline in this venv (the reason is printed when not: under transformers 5 optimum fails, so run
it from `.venv-export`, where `make bench` puts sentence-transformers 5). Short / medium / long real
texts at batch 1 (one text per call) and 32 (one encode of 32 texts); the systems alternate call by
call in a rotating order, and each figure is the median over rounds (ratios: median of the
per-round ratios). Each system's cosine to sentence-transformers' torch vectors on those texts
(min / mean) is printed too: speed without it means little for int8. Then, in a fresh process per
backend: file size, load time and peak RSS. The load average is printed with the table (2 shared
cores: read the ratios, not the absolute rates).

    .venv-export/bin/python bench/bench_onnx.py [--rounds 5] [--texts 32] [--threads 2]
        [--plot-only]

Results go to bench/results/onnx.json; the chart of cosine to the reference against speed-up to
docs/img/onnx_accuracy_speed.png (`--plot-only` redraws it from the JSON).
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

WINDOWS = {"short (~12 tok)": (10, 14), "medium (~70 tok)": (60, 80)}
REFERENCE = "st-torch"
NAME = "onnx"
OURS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
LABELS = {
    REFERENCE: "sentence-transformers, torch fp32 (reference)",
    "onnx": "ours onnx (fp32, fused)",
    "onnx-int8": "ours onnx-int8 (dynamic int8, onnxruntime)",
    "openvino": "ours openvino (the fp32 export, f32)",
    "openvino-int8": "ours openvino-int8 (NNCF static int8)",
    "openvino-bf16": "ours openvino, bf16 (SEMSEARCH_OPENVINO_PRECISION=bf16)",
    "st-onnx": 'sentence-transformers backend="onnx" (fp32)',
    "st-onnx-int8": "sentence-transformers int8 (avx512_vnni, all layers)",
}


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
    parser.add_argument("--plot-only", action="store_true", help="redraw the chart from the JSON")
    args = parser.parse_args()
    if args.plot_only:
        draw(load_results())
        return 0
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_encoder.py
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as work:
        return run(args, Path(work))


def run(args: argparse.Namespace, work: Path) -> int:
    """The tables; sentence-transformers' exports are written under `work`."""

    import torch
    from sentence_transformers import SentenceTransformer

    from semsearch.encoder import load_embedder
    from semsearch.encoder.model_files import default_model_dir

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model_dir = str(default_model_dir())
    st = SentenceTransformer(model_dir, device="cpu")
    from semsearch.encoder.onnx.embedder import OnnxOptions

    ours = {b: load_embedder(backend=b, threads=args.threads) for b in OURS}
    bf16 = OnnxOptions(openvino_precision="bf16")
    ours["openvino-bf16"] = load_embedder(
        backend="openvino", threads=args.threads, onnx_options=bf16
    )
    auto = load_embedder(backend="auto", threads=args.threads).backend
    encoders: dict[str, Callable[[list[str], int], object]] = {
        REFERENCE: lambda x, bs: st.encode(x, batch_size=bs, normalize_embeddings=True),
    }
    for name, m in ours.items():
        encoders[name] = lambda x, bs, m=m: m.encode(x, batch_size=bs)
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
    print(f"\nbackend auto serves {auto} here (backend_choice.json, measured at export)")
    if st_note:
        print(f"\n{st_note}")
    print(f"\npeak RSS: load, then encode {len(mixed)} texts (all workloads) at batch 32")
    print("\n| backend | file | size MB | load s | peak RSS MB |\n|---|---|---|---|---|")
    memory = []
    files = {
        REFERENCE: Path(model_dir) / "model.safetensors",
        **{b: ours[b].artifact for b in OURS},
    }
    for backend, path in files.items():
        m = memory_probe(backend, args.threads, mixed)
        memory.append({"backend": backend, "file": path.name, "mb": path.stat().st_size / 1e6} | m)
        print(
            f"| {backend} | {path.name} | {path.stat().st_size / 1e6:.1f} | "
            f"{m['load_s']:.2f} | {m['peak_rss_mb']:.0f} |"
        )
    for path in sorted((work / "model" / "onnx").glob("*.onnx")):  # sizes only
        print(f"| sentence-transformers onnx | {path.name} | {path.stat().st_size / 1e6:.1f} | | |")
        memory.append({"backend": "sentence-transformers onnx", "file": path.name,
                       "mb": path.stat().st_size / 1e6})  # fmt: skip
    if not args.memory_only:
        loads = (load_before, load_after)
        note = f"auto serves {auto} here. {st_note}".strip()
        draw(save_results(args, names, table, accuracy, memory, loads, len(mixed), note))
    return 0


# --- results and chart ---------------------------------------------------------------------------


def save_results(args: argparse.Namespace, names: list[str], table: list[dict], accuracy: dict,
                 memory: list[dict], loads: tuple, n_texts: int, note: str) -> dict:  # fmt: skip
    """bench/results/onnx.json: every median, the cosines and the run's context."""
    from importlib.metadata import version

    import charts

    run = charts.run_info() | {"load": charts.load_text(*loads)}
    packages = ("sentence-transformers", "transformers", "torch", "onnxruntime")
    run["versions"] = {name: version(name) for name in packages}
    results = {
        "run": run,
        "threads": args.threads,
        "rounds": args.rounds,
        "texts_per_workload": args.texts,
        "systems": names,
        "speed": [
            {"workload": row["workload"], "batch": row["batch"]}
            | {n: {"per_s": row[n][0], "ratio": row[n][1]} for n in names}
            for row in table
        ],
        "cosine": {"texts": n_texts} | accuracy,
        "memory": memory,
        "note": note,
    }
    charts.save_results(NAME, results)
    return results


def load_results() -> dict:
    import charts

    return charts.load_results(NAME)


def draw(results: dict) -> None:
    """Cosine to the reference against speed-up, one marker per system. x: the median of the six
    workload cells' ratios (small dots: each cell). y: 1 - cosine on a log scale, labelled as
    cosine ("nines"), the marker at the mean and a bar down to the min; fp32 sits at the top."""
    import math
    import statistics

    import charts

    from semsearch.encoder.onnx.accuracy import Thresholds

    GATES = Thresholds()  # what the server requires of an int8 artifact (drawn as lines)
    plt = charts.pyplot()
    from matplotlib import ticker

    # The legend (a line per system) sits under the axes, above the run's footer: sized in inches.
    footer_in, legend_in = 0.35, 0.3 + 0.18 * len(results["systems"])
    bottom_in = footer_in + legend_in + 0.6  # + the x label and ticks
    height = 5.0 + bottom_in
    fig, ax = plt.subplots(figsize=(8.5, height))
    fig.subplots_adjust(bottom=bottom_in / height, top=0.9, left=0.19, right=0.97)
    floor = 1e-6  # fp32 systems agree to ~1e-7: drawn at the top
    kinds = {REFERENCE: "reference", **dict.fromkeys((*OURS, "openvino-bf16"), "ours")}
    markers = dict(zip(results["systems"], "o^vD<>ph*", strict=False))  # one shape per system

    def gap(cosine: float) -> float:
        return max(1.0 - cosine, floor)

    for name in results["systems"]:
        ratios = [row[name]["ratio"] for row in results["speed"]]
        x = statistics.median(ratios)
        cos = results["cosine"][name]
        color = charts.COLORS[kinds.get(name, "peer")]
        marker = markers.get(name, "o")
        y, low = gap(cos["mean"]), gap(cos["min"])
        ax.scatter(ratios, [y] * len(ratios), s=12, color=color, alpha=0.35, marker=marker)
        ax.plot([x, x], [y, low], color=color, lw=1.2)
        label = f"{LABELS.get(name, name)}: x{x:.2f}, mean {cos['mean']:.4f}, min {cos['min']:.4f}"
        ax.scatter(x, y, s=60, color=color, marker=marker, zorder=3, label=label)
    for value, style in ((GATES.mean_cosine, "--"), (GATES.min_cosine, ":")):
        ax.axhline(gap(value), ls=style, lw=1, color="#555555")
    ax.annotate("int8 is served only above mean 0.997 (dashed) and min 0.99 (dotted)",
                (0.01, gap(GATES.mean_cosine)), xycoords=("axes fraction", "data"), fontsize=7,
                xytext=(0, -10), textcoords="offset points", color="#555555")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(0.05, floor / 2)  # inverted: most accurate at the top
    ticks = [10.0**-k for k in range(2, 7)]
    ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))

    def nines(v: float, _: int) -> str:
        text = f"{1 - v:.{round(-math.log10(v))}f}"
        return f">= {text}" if v <= floor else text

    ax.yaxis.set_major_formatter(ticker.FuncFormatter(nines))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("speed-up over sentence-transformers torch (marker: median of 3 workloads x "
                  "batch 1 and 32; dots: each)")  # fmt: skip
    ax.set_ylabel("cosine to sentence-transformers torch fp32\n(marker: mean, bar down to min)")
    threads = results["threads"]
    ax.set_title(
        "Encoder backends: accuracy against speed\n"
        f"{threads} thread{'s' if threads > 1 else ''} each, {results['rounds']} rounds, "
        f"{results['texts_per_workload']} texts a workload, cosine on {results['cosine']['texts']} "
        "real texts"
    )
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, footer_in / height), fontsize=8)
    charts.save_chart(fig, "onnx_accuracy_speed", results["run"])


if __name__ == "__main__":
    sys.exit(main())
