"""Decoder speed: prefill and decode tok/s, ours vs transformers' `generate`, same weights and run.

Both load SmolLM2-135M-Instruct.Q4_1.gguf (transformers dequantizes it to fp32). The systems
alternate within each round (transformers, then each of our weight formats) and speed-ups are the
medians of per-round ratios, with the load average printed beside them (2 shared cores make
single timings unreliable). Prefill = prompt tokens / time to the first new token; decode =
(N - 1) / (time for N new tokens - time for 1). Also: the KV-cache speed-up (our fp32 model,
with vs without the cache), resident memory added by each model (alone, in a fresh process:
after loading, and the peak after one generation), and for the quantized formats the greedy
divergence from our fp32 model (which matches transformers' logits exactly) with the fp32 top-2
logit margin at each divergence.

    .venv/bin/python bench/bench_decoder.py [--rounds 3] [--threads 1] [--weights fp32,int8,int4]
        [--prompt-tokens 256] [--new-tokens 128] [--kv-new 32,128,256] [--kv-prompt-tokens 32]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch  # noqa: E402

from semsearch.decoder import load_generator
from semsearch.evaluation.corpus import real_texts  # noqa: E402
from semsearch.paths import gguf_path  # noqa: E402

CHATS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Give me three tips for learning Python.",
    "Why is the sky blue?",
    "Explain recursion to a child.",
    "List the planets in order from the sun.",
]


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


_MEMORY_CHILD = """
import sys, torch
torch.set_num_threads(1)
from semsearch.decoder import load_generator
from semsearch.paths import gguf_path
import transformers, semsearch.decoder.generate  # imports before the baseline

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

base = rss("VmRSS:")
if {system!r} == "transformers":
    m = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path().parent), gguf_file=gguf_path().name, dtype=torch.float32).eval()
    loaded = rss("VmRSS:")
    with torch.inference_mode():
        m.generate(torch.tensor([list(range(1000, 1000 + {n_prompt}))]), do_sample=False,
                   max_new_tokens={n_new}, min_new_tokens={n_new}, pad_token_id=2)
else:
    g = load_generator(threads=1, weights={system!r})
    loaded = rss("VmRSS:")
    g.generate(list(range(1000, 1000 + {n_prompt})), max_new_tokens={n_new}, stop_at_eos=False)
print(loaded - base, rss("VmHWM:") - base)
"""


def memory_in_child(system: str, n_prompt: int, n_new: int) -> tuple[float, float]:
    """(+RSS after loading, +peak RSS by the end of one generation), MB, in a fresh process."""
    code = _MEMORY_CHILD.format(system=system, n_prompt=n_prompt, n_new=n_new)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ours_runner(gen: Any, prompt: list[int]) -> Any:
    def run(n: int, use_cache: bool = True) -> None:
        out = gen.generate(prompt, max_new_tokens=n, stop_at_eos=False, use_cache=use_cache)
        assert len(out) == n

    return run


def ref_runner(model: Any, prompt: list[int]) -> Any:
    ids = torch.tensor([prompt])

    def run(n: int) -> None:
        with torch.inference_mode():
            out = model.generate(
                ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2
            )
        assert out.shape[1] == len(prompt) + n

    return run


def ref_kv_runner(model: Any, prompt: list[int]) -> Any:
    ids = torch.tensor([prompt])

    def run(n: int, use_cache: bool = True) -> None:
        with torch.inference_mode():
            model.generate(
                ids,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=2,
                use_cache=use_cache,
            )

    return run


def speeds(run: Any, n_prompt: int, n_new: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) from one 1-token and one n_new-token generation."""
    t1 = timed(lambda: run(1))
    tn = timed(lambda: run(n_new))
    return n_prompt / t1, (n_new - 1) / max(tn - t1, 1e-9)


def divergence(
    fp32: Any, reference: list[list[int]], other: Any, prompts: list[list[int]], n: int
) -> dict[str, Any]:
    """Greedy n tokens of `other` vs fp32's (`reference`); at each first divergence, the fp32
    model's top-2 logit margin and its logit gap between the two chosen tokens."""
    same, details = 0, []
    for p, a in zip(prompts, reference, strict=True):
        b = other.generate(p, max_new_tokens=n, stop_at_eos=False)
        if a == b:
            same += 1
            continue
        i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        with torch.inference_mode():
            logits = fp32.model(torch.tensor([p + a[:i]]), last_only=True)[0, -1]  # (V,)
        top2 = logits.topk(2).values
        details.append(
            {
                "position": i,
                "fp32_margin": round(float(top2[0] - top2[1]), 4),
                "fp32_token": a[i],
                "other_token": b[i],
                "fp32_logit_gap_to_other": round(float(logits[a[i]] - logits[b[i]]), 4),
            }
        )
    return {"identical": same, "prompts": len(prompts), "divergences": details}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default="fp32,int8,int4")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--kv-new", default="32,128,256", help="'' to skip the KV-cache speed-up")
    ap.add_argument("--kv-prompt-tokens", type=int, default=32)
    ap.add_argument(
        "--kv-transformers",
        action="store_true",
        help="also time transformers' generate with use_cache=False (slow)",
    )
    ap.add_argument("--divergence-prompts", type=int, default=20)
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-system RSS children")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load_avg()}")

    formats = [w for w in args.weights.split(",") if w]
    memory: dict[str, tuple[float, float]] = {}
    if not args.no_memory:  # each system alone in a fresh process: load, then one generation
        names = ([] if args.no_transformers else ["transformers"]) + formats
        for name in names:
            key = "transformers fp32" if name == "transformers" else f"ours {name}"
            memory[key] = memory_in_child(name, args.prompt_tokens, args.new_tokens)
            print(
                f"memory {key}: +{memory[key][0]:.0f} MB loaded, +{memory[key][1]:.0f} MB "
                "peak after one generation",
                flush=True,
            )
    gens = {w: load_generator(threads=args.threads, weights=w) for w in formats}
    ref = None
    if not args.no_transformers:
        from transformers import AutoModelForCausalLM

        ref = AutoModelForCausalLM.from_pretrained(
            str(gguf_path().parent), gguf_file=gguf_path().name, dtype=torch.float32
        ).eval()

    any_gen = next(iter(gens.values()))
    text = " ".join(real_texts(400))
    all_ids = any_gen.tokenizer.encode(text)
    prompt = all_ids[: args.prompt_tokens]
    systems: dict[str, Any] = {f"ours {w}": ours_runner(g, prompt) for w, g in gens.items()}
    if ref is not None:
        systems = {"transformers fp32": ref_runner(ref, prompt), **systems}
    for run in systems.values():  # warm-up
        run(2)

    results: dict[str, dict[str, list[float]]] = {s: {"prefill": [], "decode": []} for s in systems}
    loads = []
    for r in range(args.rounds):
        for name, run in systems.items():
            pre, dec = speeds(run, len(prompt), args.new_tokens)
            results[name]["prefill"].append(pre)
            results[name]["decode"].append(dec)
        loads.append(load_avg())
        print(f"round {r + 1}/{args.rounds} done, load average {loads[-1]}", flush=True)

    base = "transformers fp32" if ref is not None else None
    print(
        f"\n{len(prompt)}-token prompt, {args.new_tokens} new tokens, {args.threads} thread(s), "
        f"medians of {args.rounds} alternating rounds"
    )
    print(
        f"{'system':<20}{'prefill tok/s':>14}{'decode tok/s':>14}{'prefill x':>11}"
        f"{'decode x':>10}{'+RSS MB':>9}{'+peak MB':>10}"
    )
    table = {}
    for name, res in results.items():
        row = {
            "prefill_tok_s": statistics.median(res["prefill"]),
            "decode_tok_s": statistics.median(res["decode"]),
            "rss_mb": memory[name][0] if name in memory else None,
            "peak_rss_mb": memory[name][1] if name in memory else None,
        }
        if base:
            for k in ("prefill", "decode"):
                ratios = [o / b for o, b in zip(res[k], results[base][k], strict=True)]
                row[f"{k}_ratio"] = statistics.median(ratios)
        table[name] = row
        print(
            f"{name:<20}{row['prefill_tok_s']:>14.1f}{row['decode_tok_s']:>14.1f}"
            f"{row.get('prefill_ratio', float('nan')):>11.2f}"
            f"{row.get('decode_ratio', float('nan')):>10.2f}"
            f"{_mb(row['rss_mb']):>9}{_mb(row['peak_rss_mb']):>10}"
        )

    kv: dict[str, dict[str, float]] = {}
    kv_new = [int(n) for n in args.kv_new.split(",") if n]
    kv_prompt = all_ids[: args.kv_prompt_tokens]
    kv_systems = {"ours fp32": ours_runner(gens["fp32"], kv_prompt)} if "fp32" in gens else {}
    if args.kv_transformers and ref is not None:
        kv_systems["transformers fp32"] = ref_kv_runner(ref, kv_prompt)
    for name, run in kv_systems.items() if kv_new else ():
        print(f"\nKV-cache speed-up, {name}, {len(kv_prompt)}-token prompt (1 run each):")
        kv[name] = {}
        for n in kv_new:
            with_cache = timed(lambda n=n, run=run: run(n))
            without = timed(lambda n=n, run=run: run(n, use_cache=False))
            kv[name][str(n)] = without / with_cache
            print(
                f"  {n:>4} new tokens: {with_cache:6.2f} s with, {without:7.2f} s without "
                f"-> {kv[name][str(n)]:.1f}x  (load {load_avg()})",
                flush=True,
            )

    div: dict[str, Any] = {}
    if "fp32" in gens and args.divergence_prompts:
        tok = any_gen.tokenizer
        chats = [
            tok.encode(any_gen.apply_chat_template([{"role": "user", "content": c}])) for c in CHATS
        ]
        plain = [tok.encode(t)[:48] for t in real_texts(200)[::7]]
        prompts = (chats + [p for p in plain if len(p) >= 8])[: args.divergence_prompts]
        reference = [
            gens["fp32"].generate(p, max_new_tokens=32, stop_at_eos=False) for p in prompts
        ]
        for w in formats:
            if w == "fp32":
                continue
            div[w] = divergence(gens["fp32"], reference, gens[w], prompts, 32)
            d = div[w]
            margins = [x["fp32_margin"] for x in d["divergences"]]
            print(
                f"\n{w}: greedy 32 tokens identical to fp32 on {d['identical']}/{d['prompts']} "
                f"prompts; divergences at positions {[x['position'] for x in d['divergences']]}"
                f", fp32 top-2 margins there {margins}"
            )

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "prompt_tokens": len(prompt),
                    "new_tokens": args.new_tokens,
                    "rounds": args.rounds,
                    "load_averages": loads,
                    "table": table,
                    "raw": results,
                    "kv_cache_speedup": kv,
                    "kv_prompt_tokens": args.kv_prompt_tokens,
                    "divergence": div,
                    "torch": torch.__version__,
                },
                indent=2,
            )
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
