"""Time to first token with and without the decoder's prefix cache, over HTTP.

Two servers run the same models and the same documents: one with `SEMSEARCH_PREFIX_CACHE_MB=0`
(off) and one with the default. Each request goes to both, in alternating order, one at a time
(2 shared cores: never both at once), streaming; time to first token runs from sending the request
to the first generated-text event (for `/rag` that includes the query's embedding and search,
the same on both). Reported per workload: the median time to first token on each server, the
median of the per-request ratios, and the median prompt and cached tokens of the cached server.

Workloads:
- `/rag, new question`: a question the server has not seen (questions are the opening words of
  stored documents), so only the instructions and any retrieved sources it saw before are reused;
- `/rag, repeated question`: the same question again (a retry, a popular question): everything
  before the generation prompt is reused;
- `chat, next turn`: `/v1/chat/completions` with a conversation's second turn after its first.

    .venv/bin/python bench/bench_rag_ttft.py [--questions 12] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from loadgen import Processes, free_port, wait_ready

from semsearch.evaluation.corpus import real_texts

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SERVERS = {"cache off": "0", "cache on": None}  # SEMSEARCH_PREFIX_CACHE_MB (None: the default)
NEW_TOKENS = 8
DOCUMENTS = 100  # each of 4 real paragraphs: about the 1,200 characters a /rag source keeps
K = 3


@dataclass
class Cell:
    ttft: list[float] = field(default_factory=list)  # seconds
    prompt_tokens: list[int] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)


def start(procs: Processes, name: str, cache_mb: str | None, threads: int, work: Path) -> str:
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SEMSEARCH_THREADS=str(threads))
    if cache_mb is not None:
        env["SEMSEARCH_PREFIX_CACHE_MB"] = cache_mb
    index = work / f"index-{name.replace(' ', '-')}"
    cmd = [str(VENV_BIN / "semsearch"), "--log-level", "WARNING", "serve", "--host", "127.0.0.1",
           "--index-dir", str(index), "--port", str(port)]  # fmt: skip
    log = work / f"{name.replace(' ', '-')}.log"
    proc = procs.start(cmd, log, env, ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_ready(proc, base, log)
    return base


def first_token(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, dict]:
    """Seconds to the first generated-text event of a streamed request, and the final usage."""
    started = time.perf_counter()
    ttft = None
    usage: dict[str, Any] = {}
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            # /rag: one event per token; OpenAI: the role chunk first, then content chunks
            text_event = "text" in event or any(
                c.get("delta", {}).get("content") or c.get("finish_reason")
                for c in event.get("choices", [])
            )
            if ttft is None and text_event:
                ttft = time.perf_counter() - started
            usage = event.get("usage") or usage
    assert ttft is not None, f"{url}: no text event"
    return ttft, usage


def cached_of(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details")
    return int(details["cached_tokens"] if details else usage.get("cached_tokens", 0))


def chat_turns(i: int, texts: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """A conversation's first turn (about one document) and its second."""
    first = [
        {"role": "system", "content": "You are a careful assistant. Answer in two sentences."},
        {"role": "user", "content": f"Summarize this text:\n\n{texts[i][:1200]}"},
    ]
    second = [
        *first,
        {"role": "assistant", "content": texts[i][:200]},
        {"role": "user", "content": "Which word in it matters most, and why?"},
    ]
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=12, help="requests per workload")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    paragraphs = real_texts(4 * DOCUMENTS, seed=3)
    texts = tuple(" ".join(paragraphs[i : i + 4]) for i in range(0, len(paragraphs), 4))
    documents = [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]
    questions = [" ".join(t.split()[:10]) + "?" for t in texts[-args.questions :]]
    cells: dict[tuple[str, str], Cell] = {}
    ratios: dict[str, list[float]] = {}
    procs = Processes()
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=600, trust_env=False) as http:
        try:
            bases = {name: start(procs, name, mb, args.threads, Path(tmp)) for name, mb in
                     SERVERS.items()}  # fmt: skip
            for base in bases.values():
                http.post(f"{base}/documents", json={"documents": documents}).raise_for_status()
            for base in bases.values():  # warm up: one request each, unmeasured
                first_token(http, f"{base}/rag", {"query": "warm up", "k": 1, "max_new_tokens": 1})

            def measure(workload: str, path: str, body: dict, order: list[str]) -> None:
                seconds = {}
                for name in order:
                    ttft, usage = first_token(http, bases[name] + path, body)
                    cell = cells.setdefault((workload, name), Cell())
                    cell.ttft.append(ttft)
                    cell.prompt_tokens.append(int(usage.get("prompt_tokens", 0)))
                    cell.cached_tokens.append(cached_of(usage))
                    seconds[name] = ttft
                ratios.setdefault(workload, []).append(seconds["cache off"] / seconds["cache on"])

            rag = {"k": K, "max_new_tokens": NEW_TOKENS}
            for i, question in enumerate(questions):
                order = list(bases) if i % 2 == 0 else list(reversed(bases))
                measure("/rag, new question", "/rag", {**rag, "query": question}, order)
                measure("/rag, repeated question", "/rag", {**rag, "query": question}, order)
                first, second = chat_turns(i, texts)
                for name in order:  # the first turn, unmeasured
                    first_token(http, f"{bases[name]}/v1/chat/completions",
                                {"messages": first, "max_tokens": NEW_TOKENS})  # fmt: skip
                chat = {"messages": second, "max_tokens": NEW_TOKENS,
                        "stream_options": {"include_usage": True}}  # fmt: skip
                measure("chat, next turn", "/v1/chat/completions", chat, order)
                print(f"  {i + 1}/{len(questions)}", file=sys.stderr)
        finally:
            procs.close()

    rows = []
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| workload | TTFT off, ms | TTFT on, ms | speed-up | prompt tokens | cached tokens |")
    print("|---|---|---|---|---|---|")
    for workload in ratios:
        off, on = cells[(workload, "cache off")], cells[(workload, "cache on")]
        row = {
            "workload": workload,
            "ttft_off_ms": statistics.median(off.ttft) * 1000,
            "ttft_on_ms": statistics.median(on.ttft) * 1000,
            "speedup": statistics.median(ratios[workload]),
            "prompt_tokens": statistics.median(on.prompt_tokens),
            "cached_tokens": statistics.median(on.cached_tokens),
        }
        rows.append(row)
        print(f"| {workload} | {row['ttft_off_ms']:.0f} | {row['ttft_on_ms']:.0f} | "
              f"{row['speedup']:.2f}x | {row['prompt_tokens']:.0f} | "
              f"{row['cached_tokens']:.0f} |")  # fmt: skip
    if args.json:
        settings = {"questions": args.questions, "threads": args.threads}
        args.json.write_text(json.dumps({"rows": rows, "args": settings}, indent=1))


if __name__ == "__main__":
    main()
