"""`semsearch verify`, decoder part: our byte-level BPE and Llama against transformers' reading of
the same GGUF (fp32), on real text and a few plain and chat prompts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semsearch.evaluation.checks import Check, reference_module

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
]
CHAT = [[{"role": "user", "content": "What is the boiling point of water at sea level?"}]]
NEW_TOKENS = 16
MAX_LOGIT_DIFF = 1e-3


def _reference_tokenizer(transformers, gguf_dir: str, gguf_name: str):
    """transformers' tokenizer from the GGUF, with SmolLM2's own pre-tokenizer (digits split one
    by one, then GPT-2's regex: llama.cpp's "smollm"); transformers' GGUF conversion lacks it."""
    pre_tokenizers = reference_module("tokenizers.pre_tokenizers")
    tok = transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    return tok


def check_decoder(texts: Sequence[str], gguf: Path | None = None) -> list[Check]:
    """The decoder from `gguf` (None: the models directory's) against transformers on it."""
    torch = reference_module("torch")
    transformers = reference_module("transformers")
    from semsearch.decoder import load_generator
    from semsearch.paths import gguf_path

    gguf = Path(gguf) if gguf is not None else gguf_path()
    gen = load_generator(gguf)
    ref_tok = _reference_tokenizer(transformers, str(gguf.parent), gguf.name)
    bad = [
        t
        for t in texts
        if gen.tokenizer.encode(t) != ref_tok(t, add_special_tokens=False)["input_ids"]
    ]
    checks = [
        Check(
            name="decoder tokenizer ids vs transformers (GGUF)",
            measured=f"{1 - len(bad) / len(texts):.4%} identical of {len(texts)}",
            threshold="100%",
            passed=not bad,
            detail=f"first mismatch: {bad[0][:80]!r}" if bad else "",
        )
    ]
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    prompts = [gen.tokenizer.encode(p) for p in PROMPTS]
    prompts += [gen.tokenizer.encode(gen.apply_chat_template(m)) for m in CHAT]
    worst, same = 0.0, 0
    with torch.inference_mode():
        for ids in prompts:
            ours = gen.generate(ids, max_new_tokens=NEW_TOKENS, stop_at_eos=False)
            theirs = ref.generate(
                torch.tensor([ids]),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=gen.eos_token_id,
            )[0, len(ids) :].tolist()
            same += ours == theirs
            ours_logits = gen.model(torch.tensor([ids]), last_only=True)[0, -1]
            ref_logits = ref(torch.tensor([ids])).logits[0, -1]
            worst = max(worst, float((ours_logits - ref_logits).abs().max()))
    checks.append(
        Check(
            name=f"decoder greedy {NEW_TOKENS} tokens and last logits vs transformers (fp32)",
            measured=f"{same}/{len(prompts)} continuations identical, max |logit diff| {worst:.2e}",
            threshold=f"all identical, max |logit diff| <= {MAX_LOGIT_DIFF}",
            passed=same == len(prompts) and worst <= MAX_LOGIT_DIFF,
        )
    )
    return checks
