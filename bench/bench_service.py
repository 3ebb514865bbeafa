"""Service speed: our `/embed` server vs a naive FastAPI app, Infinity and the library in-process.

Every server runs as a subprocess on a free 127.0.0.1 port and is warmed up; then, round after
round, each workload is run against every system in turn (the order rotates per round), and each
round also times the library in this process (`load_embedder(backend).encode`: batch 1 over the
texts one by one, and one batch-32 encode). Tables show medians over rounds; ratios are medians of
per-round ratios (2 shared cores: one busy neighbour moves absolute figures); the load average is
printed with them.
Server CPU per request comes from /proc (all threads, and the main thread = the event loop).

Threads: every model runs `--threads` intra-op threads (default 1: stable on shared cores, and it
leaves the other core to the event loop and the load generator); OMP_NUM_THREADS/MKL_NUM_THREADS
are set to it and OMP_WAIT_POLICY=PASSIVE. Infinity's CLI has no thread setting: its onnxruntime
session keeps ORT's default (one intra-op thread per core).

Infinity (optional, `--skip-infinity`) lives in its own venv (it pins sentence-transformers 3):

    python3.11 -m venv /tmp/venv-infinity
    /tmp/venv-infinity/bin/pip install "torch==2.13.0+cpu" "infinity-emb[server,optimum]==0.0.78"

and serves a copy of the model directory with a dynamic-int8 ONNX at its root (made once here).

    .venv/bin/python bench/bench_service.py [--rounds 5] [--requests 1024] [--seconds 3]
        [--backends onnx-int8,torch] [--threads 1] [--concurrency 1 8 32] [--skip-infinity]
        [--skip-naive] [--plot-only]

The per-round values go to bench/results/service.json, and the chart of sentences/s and p99
latency against concurrency to docs/img/service_concurrency.png (`--plot-only` redraws it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import charts
import httpx
from loadgen import LoadResult, Processes, free_port, process_cpu, run_load, wait_ready
from naive_server import default_model_dir
from service_report import (
    INFINITY,
    NAIVE,
    NAME,
    Cell,
    Run,
    Workload,
    draw,
    fmt_load,
    report,
    results,
)

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SHORT_TOKENS = (10, 14)  # tokens incl. [CLS]/[SEP] of a "short text"
INFINITY_NAME = "minilm"


@dataclass
class Server:
    name: str
    url: str  # the embedding route
    shape: str  # "tei" ({"inputs"}) or "openai" ({"input", "model"})
    proc: subprocess.Popen[bytes]
    metrics_url: str | None = None  # ours: /metrics, for batch sizes


def thread_env(threads: int) -> dict[str, str]:
    pinned = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return dict(os.environ, **pinned, OMP_WAIT_POLICY="PASSIVE", TOKENIZERS_PARALLELISM="false")


# --- systems -------------------------------------------------------------------------------------


def launch(procs: Processes, name: str, cmd: list[str], env: dict[str, str], route: str,
           work: Path, cwd: Path = ROOT, probe: str = "/ready") -> Server:  # fmt: skip
    """Start `cmd` (which takes `--port`), wait until `probe` answers 200 (the naive server and
    Infinity answer `/health` once their model is loaded)."""
    port = free_port()
    log = work / f"{name.replace(' ', '-')}.log"
    proc = procs.start([*cmd, "--port", str(port)], log, env, cwd)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base, log, probe=probe)
    shape = "openai" if route == "/embeddings" else "tei"
    return Server(name, base + route, shape, proc, f"{base}/metrics" if shape == "tei" else None)


def start_ours(procs: Processes, backend: str, threads: int, work: Path) -> Server:
    cmd = [str(VENV_BIN / "semsearch"), *"--log-level WARNING serve --host 127.0.0.1".split(),
           "--backend", backend, "--threads", str(threads), "--index-dir",
           str(work / f"index-{backend}")]  # fmt: skip
    env = thread_env(threads) | {"SEMSEARCH_DECODER": "off"}
    return launch(procs, f"ours {backend}", cmd, env, "/embed", work)


def start_naive(procs: Processes, threads: int, work: Path) -> Server:
    cmd = [sys.executable, str(ROOT / "bench" / "naive_server.py"), "--threads", str(threads)]
    server = launch(procs, NAIVE, cmd, thread_env(threads), "/embed", work, probe="/health")
    server.metrics_url = None
    return server


_EXPORT = """
import sys
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTQuantizer
from optimum.onnxruntime.configuration import AutoQuantizationConfig
model = ORTModelForFeatureExtraction.from_pretrained(sys.argv[1], export=True)
config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
ORTQuantizer.from_pretrained(model).quantize(save_dir=sys.argv[2], quantization_config=config)
"""


def prepare_infinity_model(venv: Path, model_dir: Path, cache: Path) -> Path:
    """A copy of the model dir plus a dynamic-int8 ONNX (avx512_vnni, what sentence-transformers'
    `export_dynamic_quantized_onnx_model` makes) at its root as `model_quantized.onnx`, exported
    with the Infinity venv's optimum (the project venv's optimum does not import with
    transformers 5). Kept in `cache` between runs."""
    target = cache / "infinity-model"
    if (target / "model_quantized.onnx").exists():
        return target
    tmp, export = cache / "infinity-model.tmp", cache / "infinity-export.tmp"
    for path in (tmp, export):
        shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    cmd = [str(venv / "bin" / "python"), "-c", _EXPORT, str(tmp), str(export)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run(cmd, check=True, timeout=900, env=env, capture_output=True)
    (export / "model_quantized.onnx").rename(tmp / "model_quantized.onnx")
    shutil.rmtree(export)
    tmp.rename(target)
    return target


def start_infinity(procs: Processes, venv: Path, model: Path, threads: int, work: Path) -> Server:
    cmd = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", ".", "--served-model-name",
           INFINITY_NAME, *"--engine optimum --device cpu --pooling-method mean --batch-size 32 "
           "--host 127.0.0.1 --log-level warning --no-model-warmup".split()]  # fmt: skip
    env = thread_env(threads) | {"HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    return launch(procs, INFINITY, cmd, env, "/embeddings", work, cwd=model, probe="/health")


def bodies(server: Server, texts: list[str], per_request: int) -> list[bytes]:
    groups: list[Any] = texts
    if per_request > 1:
        groups = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
        groups = [g for g in groups if len(g) == per_request]
    key = {"tei": "inputs", "openai": "input"}[server.shape]
    extra = {"model": INFINITY_NAME} if server.shape == "openai" else {}
    return [json.dumps({key: g, **extra}).encode() for g in groups]


def batch_totals(metrics_url: str) -> tuple[float, float]:
    """(sum, count) of `semsearch_batch_size` (inputs per model call) from /metrics."""
    lines = httpx.get(metrics_url, timeout=5.0, trust_env=False).text.splitlines()
    found = dict(line.split(" ", 1) for line in lines if line.startswith("semsearch_batch_size_"))
    return float(found["semsearch_batch_size_sum"]), float(found["semsearch_batch_size_count"])


# --- measuring -----------------------------------------------------------------------------------


def measure(
    server: Server, payload: list[bytes], wl: Workload, args: argparse.Namespace, cell: Cell
) -> None:
    cap = args.requests if wl.per_request == 1 else max(16, args.requests // 8)
    cpu_before = process_cpu(server.proc.pid)
    batch_before = batch_totals(server.metrics_url) if server.metrics_url else (0.0, 0.0)
    client_before = time.process_time()
    load = run_load(server.url, payload, concurrency=wl.concurrency, requests=cap,
                    time_limit=args.seconds, sentences_per_request=wl.per_request,
                    client=args.client)  # fmt: skip
    result: LoadResult = asyncio.run(load)
    client = time.process_time() - client_before
    n = max(1, len(result.latencies) + result.errors)
    after = process_cpu(server.proc.pid)
    total, main = ((x - y) * 1000 / n for x, y in zip(after, cpu_before, strict=True))
    cell.sps.append(result.sentences_per_s)
    cell.rps.append(result.requests_per_s)
    cell.p50.append(result.percentile_ms(50))
    cell.p99.append(result.percentile_ms(99))
    cell.cpu_ms.append(total)
    cell.loop_ms.append(main)
    cell.client_ms.append(client * 1000 / n)
    cell.errors += result.errors
    cell.first_error = cell.first_error or result.first_error
    if server.metrics_url:
        s1, c1 = batch_totals(server.metrics_url)
        cell.batch.append((s1 - batch_before[0]) / max(1.0, c1 - batch_before[1]))


def warm_up(server: Server, texts: list[str], workloads: list[Workload],
            args: argparse.Namespace) -> None:  # fmt: skip
    for wl in workloads:
        payload = bodies(server, texts, wl.per_request)
        asyncio.run(run_load(server.url, payload, concurrency=wl.concurrency, requests=10_000,
                             time_limit=args.warmup, client=args.client))  # fmt: skip


class Library:
    """`load_embedder(backend).encode` in this process (batch 1 per text, and batch 32), loaded
    the way the server loads it (same SEMSEARCH_* ONNX options)."""

    def __init__(self, backend: str, threads: int, texts: list[str]) -> None:
        from semsearch.service.encoders import load_configured_embedder

        self.embedder = load_configured_embedder(backend=backend, threads=threads)
        self.texts = texts
        self.embedder.encode(texts[:64], batch_size=32)  # warm-up
        for t in texts[:32]:
            self.embedder.encode([t], batch_size=1)

    def measure(self, n1: int, n32: int) -> tuple[list[float], float]:
        """(seconds of each batch-1 call over n1 texts, sentences/s of one batch-32 encode)."""
        calls = []
        for t in self.texts[:n1]:
            start = time.perf_counter()
            self.embedder.encode([t], batch_size=1)
            calls.append(time.perf_counter() - start)
        start = time.perf_counter()
        self.embedder.encode(self.texts[:n32], batch_size=32)
        return calls, n32 / (time.perf_counter() - start)


def short_texts(n: int, seed: int = 0) -> list[str]:
    """Real short texts of the shipped corpus (evaluation.corpus), 10-14 tokens with [CLS]/[SEP]."""
    from semsearch.encoder.wordpiece import WordPieceTokenizer
    from semsearch.evaluation.corpus import real_texts

    pool = list(real_texts(5000))
    tokenizer = WordPieceTokenizer.from_dir(Path(default_model_dir()))
    lengths = [len(e) for e in tokenizer.encode_batch(pool)]
    lo, hi = SHORT_TOKENS
    fits = sorted({t for t, k in zip(pool, lengths, strict=True) if lo <= k <= hi})
    if len(fits) < n:
        raise SystemExit(f"only {len(fits)} short texts in the shipped corpus; lower --texts")
    return random.Random(seed).sample(fits, n)


# --- main ----------------------------------------------------------------------------------------


def start_servers(args: argparse.Namespace, procs: Processes, work: Path, notes: list[str],
                  backends: list[str]) -> list[Server]:  # fmt: skip
    servers = [start_ours(procs, backend, args.threads, work) for backend in backends]
    if not args.skip_naive:
        servers.append(start_naive(procs, args.threads, work))
    if not args.skip_infinity:
        venv = args.infinity_venv
        try:
            if not (venv / "bin" / "infinity_emb").exists():
                raise RuntimeError(f"no {venv}/bin/infinity_emb (see the module docstring)")
            model = prepare_infinity_model(venv, Path(default_model_dir()), args.cache_dir)
            servers.append(start_infinity(procs, venv, model, args.threads, work))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            notes.append(f"Infinity left out: {exc}")
    return servers


def start_libraries(args: argparse.Namespace, texts: list[str],
                    notes: list[str]) -> dict[str, Library]:  # fmt: skip
    libraries: dict[str, Library] = {}
    for backend in args.backends:
        try:
            libraries[backend] = Library(backend, args.threads, texts)
        except (ValueError, OSError, ImportError, RuntimeError) as exc:  # e.g. no int8 artifacts
            notes.append(f"backend {backend} left out: {type(exc).__name__}: {exc}")
    return libraries


def run_rounds(args: argparse.Namespace, servers: list[Server], texts: list[str],
               libraries: dict[str, Library], run: Run) -> None:  # fmt: skip
    payloads = {(s.name, w.per_request): bodies(s, texts, w.per_request)
                for s in servers for w in run.workloads}  # fmt: skip
    for r in range(args.rounds):
        for wl in run.workloads:
            shift = r % len(servers)
            for server in servers[shift:] + servers[:shift]:
                cell = run.cells[(wl.name, server.name)]
                measure(server, payloads[(server.name, wl.per_request)], wl, args, cell)
        for backend, library in libraries.items():
            calls, b32_sps = library.measure(min(len(texts), 128), min(len(texts), 256))
            lib = run.library.setdefault(backend, {"b1_p50_ms": [], "b1_sps": [], "b32_sps": []})
            lib["b1_p50_ms"].append(statistics.median(calls) * 1000)
            lib["b1_sps"].append(len(calls) / sum(calls))
            lib["b32_sps"].append(b32_sps)
        run.loads.append(os.getloadavg())
        c32 = [f"{s.name} {run.cells[(Workload(32, 1).name, s.name)].sps[-1]:.0f}" for s in servers]
        line = f"round {r + 1}/{args.rounds}: load {fmt_load(run.loads[-1])}; c=32 sentences/s:"
        print(line, ", ".join(c32), file=sys.stderr, flush=True)


def bench(args: argparse.Namespace, procs: Processes) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    print(f"logs in {work}", file=sys.stderr)
    notes: list[str] = []
    loads = [os.getloadavg()]
    texts = short_texts(args.texts)
    libraries = start_libraries(args, texts, notes)
    servers = start_servers(args, procs, work, notes, list(libraries))
    workloads = [Workload(c, 1) for c in args.concurrency]
    workloads += [Workload(c, 32) for c in args.batch_concurrency]
    names = [s.name for s in servers]
    cells = {(wl.name, n): Cell() for wl in workloads for n in names}
    run = Run(args, workloads, names, cells, {}, loads, notes)
    for server in servers:
        warm_up(server, texts, workloads, args)
    run_rounds(args, servers, texts, libraries, run)
    loads.append(os.getloadavg())
    for (wl_name, name), cell in cells.items():
        if cell.errors:
            notes.append(f"{name}, {wl_name}: {cell.errors} errors, first: {cell.first_error}")
    text = report(run)
    print(text)
    charts.save_results(NAME, results(run, text))
    draw(charts.load_results(NAME))
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = p.add_argument
    add("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    add("--requests", type=int, default=1024, help="per cell (32-text cells: 1/8, >= 16)")
    add("--seconds", type=float, default=3.0, help="time limit per cell (default 3)")
    add("--backends", type=lambda s: s.split(","), default=["onnx-int8", "torch"], help="ours")
    add("--threads", type=int, default=1, help="intra-op threads of every model (default 1)")
    add("--texts", type=int, default=512, help="distinct short texts (default 512)")
    add("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="of 1-text requests")
    add("--batch-concurrency", type=int, nargs="+", default=[1], help="of 32-text requests")
    add("--warmup", type=float, default=1.0, help="seconds per workload and server")
    add("--skip-infinity", action="store_true")
    add("--skip-naive", action="store_true")
    add("--infinity-venv", type=Path, default=Path("/tmp/venv-infinity"))
    add("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "semsearch-bench")
    add("--client", choices=["raw", "httpx"], default="raw", help="see bench/loadgen.py")
    add("--plot-only", action="store_true", help="redraw the chart from the saved results")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.plot_only:
        draw(charts.load_results(NAME))
        return 0
    os.environ.update(thread_env(args.threads))  # before torch loads (the in-process library)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` ends the children
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        return bench(args, procs)
    finally:
        procs.close()


if __name__ == "__main__":
    raise SystemExit(main())
