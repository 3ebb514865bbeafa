"""`semsearch generate`: the bundled decoder on one prompt, text on stdout, usage on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from semsearch.cli.arguments import non_negative_int, positive_int, setting_help
from semsearch.cli.exits import UsageError

WEIGHTS = ("fp32", "int8", "int4")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = "run the bundled decoder on a prompt"
    p = subparsers.add_parser("generate", help=what, description=what)
    p.add_argument("prompt", metavar="PROMPT", help="the prompt (raw text unless --chat)")
    p.add_argument(
        "--max-new-tokens",
        type=non_negative_int,
        default=128,
        help="tokens to add at most (default: %(default)s)",
    )
    p.add_argument(
        "--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)"
    )
    p.add_argument("--top-p", type=float, default=1.0, help="1 = off (default: %(default)s)")
    p.add_argument(
        "--top-k", type=non_negative_int, default=0, help="0 = off (default: %(default)s)"
    )
    p.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="1 = off (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, help="sampling seed, 0 to 2^64-1 (default: fresh entropy)")
    p.add_argument(
        "--stream", action="store_true", help="print text as it comes (default: all at the end)"
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="send the prompt as one user message through the chat template (default: raw)",
    )
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="fp32",
        help="weights format (default: %(default)s; the server's SEMSEARCH_DECODER does not apply)",
    )
    p.add_argument(
        "--gguf",
        type=Path,
        help=setting_help("GGUF file", "gguf_path"),
    )
    p.add_argument("--threads", type=positive_int, help="torch threads (default: torch's)")
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from semsearch.decoder import SamplingParams, load_generator
    from semsearch.service.settings import Settings

    try:  # refuse bad values before the model loads
        SamplingParams(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    gguf = args.gguf or Settings().gguf_path
    generator = load_generator(gguf_path=gguf, threads=args.threads, weights=args.weights)
    if args.chat:
        prompt_ids = generator.chat_ids([{"role": "user", "content": args.prompt}])
    else:
        prompt_ids = generator.tokenizer.encode(args.prompt)
    events = generator.stream(
        prompt_ids,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    parts: list[str] = []
    usage: dict[str, int] = {}
    for event in events:
        if args.stream:
            print(event.text, end="", flush=True)
        parts.append(event.text)
        if event.finish_reason is not None:
            usage = event.usage or {}
    if not args.stream:
        print("".join(parts), end="")
    print()
    print(
        f"[{usage.get('completion_tokens', 0)} tokens, prompt {usage.get('prompt_tokens', 0)}]",
        file=sys.stderr,
    )
    return 0
