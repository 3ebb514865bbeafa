"""`/embed` latency while the same server generates: what a RAG deployment sees on shared cores.

One `semsearch serve` with the encoder (`onnx-int8`) and the decoder (`int4`), `--threads`
intra-op threads each (OMP_NUM_THREADS for torch). Rounds alternate two phases, each timing
`--requests` one-short-text `/embed` calls at concurrency 1: "idle" (nothing else running) and
"generating" (a client keeps one `/generate` of `--new-tokens` greedy tokens running all along).
Medians over rounds of p50 / p99; the decode rate seen by the generating client is printed too.

    .venv/bin/python bench/bench_mixed.py [--rounds 3] [--requests 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from loadgen import Processes, free_port, run_load, wait_ready

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROMPT = "Explain in detail how a vector database answers a nearest-neighbour query."


async def keep_generating(base: str, new_tokens: int, stop: asyncio.Event, rates: list[float]):
    """Back-to-back `/generate` calls until `stop`; appends each call's tokens/s to `rates`."""
    body = {"prompt": PROMPT, "max_new_tokens": new_tokens, "temperature": 0}
    async with httpx.AsyncClient(base_url=base, timeout=600, trust_env=False) as client:
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post("/generate", json=body)
            response.raise_for_status()
            tokens = response.json()["usage"]["completion_tokens"]
            rates.append(tokens / (time.perf_counter() - started))


async def embed_phase(base: str, bodies: list[bytes], requests: int, generating: bool, new_tokens):
    """p50 and p99 ms of `/embed` at concurrency 1, with or without a generation running."""
    stop, rates = asyncio.Event(), []
    background = None
    if generating:
        background = asyncio.create_task(keep_generating(base, new_tokens, stop, rates))
        await asyncio.sleep(1.0)  # the first generation is past its prefill
    result = await run_load(
        f"{base}/embed", bodies, concurrency=1, requests=requests, time_limit=120.0
    )
    if background is not None:
        stop.set()
        await background
    if result.errors:
        raise RuntimeError(f"/embed errors: {result.first_error}")
    return result.percentile_ms(50), result.percentile_ms(99), rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    from semsearch.evaluation.corpus import real_texts

    texts = [t for t in real_texts(3000) if 30 <= len(t) <= 90][:64]
    bodies = [json.dumps({"inputs": t}).encode() for t in texts]
    threads = str(args.threads)
    env = os.environ | {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OMP_WAIT_POLICY": "PASSIVE",
        "SEMSEARCH_DECODER": "int4",
    }
    procs = Processes()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-mixed-") as work:
        port = free_port()
        cmd = [str(VENV_BIN / "semsearch"), "--log-level", "WARNING", "serve", "--host",
               "127.0.0.1", "--port", str(port), "--backend", "onnx-int8", "--threads", threads,
               "--index-dir", str(Path(work) / "index")]  # fmt: skip
        log = Path(work) / "server.log"
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(procs.start(cmd, log, env, ROOT), base, log)
            phases: dict[str, list[tuple[float, float]]] = {"idle": [], "generating": []}
            decode_rates: list[float] = []
            for r in range(args.rounds):
                order = ["idle", "generating"] if r % 2 == 0 else ["generating", "idle"]
                for phase in order:
                    p50, p99, rates = asyncio.run(
                        embed_phase(
                            base, bodies, args.requests, phase == "generating", args.new_tokens
                        )
                    )
                    phases[phase].append((p50, p99))
                    decode_rates += rates
                    print(f"round {r + 1} {phase}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
        finally:
            procs.close()
    print(
        f"\n{args.threads} thread(s) per model, {args.rounds} rounds x {args.requests} /embed "
        f"calls per phase; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print("| phase | /embed p50 ms | /embed p99 ms |\n|---|---:|---:|")
    for phase, values in phases.items():
        p50 = statistics.median(v[0] for v in values)
        p99 = statistics.median(v[1] for v in values)
        print(f"| {phase} | {p50:.2f} | {p99:.2f} |")
    if decode_rates:
        print(
            f"\ngenerating client: {statistics.median(decode_rates):.1f} tokens/s per /generate "
            f"({args.new_tokens} new tokens, prefill included; median of {len(decode_rates)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
