"""Byte-level BPE from scratch, the ChatML chat template, and a UTF-8-safe streaming decoder.

Follows GPT-2's `encoder.py` (the byte<->unicode table, merges applied by rank) and minbpe's
`RegexTokenizer` (pre-tokenize with a regex, BPE inside each piece, special tokens split out first).
Pure Python: no `tokenizers`, `transformers` or `torch`.

Pre-tokenizers, keyed by the GGUF's `tokenizer.ggml.pre`:
- "gpt2": GPT-2's regex, what transformers' GGUF conversion builds for a byte-level vocabulary whose
  `pre` it does not know (it has no entry for "smollm").
- "smollm": llama.cpp's `LLAMA_VOCAB_PRE_TYPE_SMOLLM` -- every `\\p{N}` character split off on its
  own first, then GPT-2's regex on what is left; the same as SmolLM2's own `tokenizer.json`
  (`Digits(individual_digits=True)` then `ByteLevel`). The two differ only next to digits, e.g.
  "a  1" is `a|ĠĠ|1` here and `a|Ġ|Ġ|1` under "gpt2" (pieces "a", " ", " 1"); 123 of the 5,000
  probe texts differ. The vocabulary has no multi-digit tokens, so nothing else changes.
Python's `re` has no `\\p{...}`, so the letter, number and whitespace classes are built from
`unicodedata` with Oniguruma's definitions (`\\s` = tab..CR, NEL, Zs, Zl, Zp).
"""

from __future__ import annotations

import codecs
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
PRE_TOKENIZERS = ("gpt2", "smollm")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: every byte to a printable character; printable bytes map to themselves."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def _ranges(flags: list[bool]) -> str:
    """A regex character-class body of every code point whose flag is set, as compact ranges."""
    parts: list[str] = []
    start = -1
    for cp in range(len(flags) + 1):
        ok = cp < len(flags) and flags[cp]
        if ok and start < 0:
            start = cp
        elif not ok and start >= 0:
            end = cp - 1
            parts.append(re.escape(chr(start)) if start == end
                         else f"{re.escape(chr(start))}-{re.escape(chr(end))}")
            start = -1
    return "".join(parts)


@lru_cache(maxsize=1)
def _classes() -> tuple[str, str, str]:
    """(letters, numbers, whitespace) class bodies: \\p{L}, \\p{N} and Oniguruma's \\s."""
    cats = [unicodedata.category(chr(c)) for c in range(sys.maxunicode + 1)]
    letters = _ranges([c[0] == "L" for c in cats])
    numbers = _ranges([c[0] == "N" for c in cats])
    space = [c in ("Zs", "Zl", "Zp") for c in cats]
    for cp in (9, 10, 11, 12, 13, 0x85):
        space[cp] = True
    return letters, numbers, _ranges(space)


@lru_cache(maxsize=1)
def gpt2_regex() -> re.Pattern[str]:
    """GPT-2's split, with Oniguruma's classes spelled out for Python's `re`:
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"""
    L, N, S = _classes()
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
    )


@lru_cache(maxsize=1)
def _digit_regex() -> re.Pattern[str]:
    return re.compile(f"[{_classes()[1]}]")


class BPETokenizer:
    """Byte-level BPE over a llama.cpp vocabulary (`tokenizer.ggml.tokens/merges/token_type`)."""

    def __init__(self, tokens: Sequence[str], merges: Iterable[str],
                 token_types: Sequence[int] | None = None, pre: str = "smollm") -> None:
        if pre not in PRE_TOKENIZERS:
            raise ValueError(f"unknown pre-tokenizer {pre!r}; known: {', '.join(PRE_TOKENIZERS)}")
        self.pre = pre
        self._regex = gpt2_regex()
        self._digits = _digit_regex() if pre == "smollm" else None
        self.id_to_token = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.id_to_token)}
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            a, b = merge.split(" ")
            self.ranks[(a, b)] = rank
        types = token_types or [1] * len(self.id_to_token)
        self.special_ids = {i for i, t in enumerate(types) if t == CONTROL}
        self.special_tokens = {self.id_to_token[i]: i for i in sorted(self.special_ids)}
        alternatives = sorted(self.special_tokens, key=len, reverse=True)  # longest first
        self._special_re = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") \
            if alternatives else None
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        # SmolLM2's vocabulary has no token for 21 bytes (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d,
        # 0xc0, 0xc1, 0xf1, 0xf2, 0xf5..0xff); as in `tokenizers`' BPE without an unknown token,
        # they are dropped from the ids (see `_bpe`).
        self.missing_bytes = {b for b, c in self.byte_encoder.items() if c not in self.vocab}
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    # -- encoding -------------------------------------------------------------------------------

    def _bpe(self, piece: str) -> list[int]:
        """Merge the byte-characters of one pre-token by rank, lowest rank first (GPT-2's `bpe`)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        ranks = self.ranks
        while len(word) > 1:
            best, best_rank = -1, len(ranks)
            for i in range(len(word) - 1):
                r = ranks.get((word[i], word[i + 1]), best_rank)
                if r < best_rank:
                    best, best_rank = i, r
            if best < 0:
                break
            pair = (word[best], word[best + 1])
            merged: list[str] = []
            i = 0
            while i < len(word):  # merge every occurrence of the pair, left to right
                if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.vocab[w] for w in word if w in self.vocab]
        if len(self._cache) < 200_000:
            self._cache[piece] = ids
        return ids

    def _pieces(self, text: str) -> Iterable[str]:
        if self._digits is None:
            yield from self._regex.findall(text)
            return
        pos = 0
        for m in self._digits.finditer(text):  # llama.cpp: "\p{N}" first, then GPT-2's regex
            if m.start() > pos:
                yield from self._regex.findall(text, pos, m.start())
            yield m.group()
            pos = m.end()
        if pos < len(text):
            yield from self._regex.findall(text, pos)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with no special-token handling."""
        ids: list[int] = []
        for piece in self._pieces(text):
            ids.extend(self._bpe(piece))
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> ids; no BOS/EOS added; special-token text (`<|im_end|>`) -> its single id."""
        if self._special_re is None:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:  # odd parts are the captured special tokens
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    # -- decoding -------------------------------------------------------------------------------

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for; a special token stands for its own text."""
        token = self.id_to_token[token_id]
        if token_id in self.special_ids:
            return token.encode("utf-8")
        return bytes(self.byte_decoder[c] for c in token)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; invalid UTF-8 becomes U+FFFD, as in transformers' byte-level decoder."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Incremental detokenizer: `push(id)` returns only complete UTF-8 text, holding back a
    partial multi-byte character until its last byte arrives (`codecs` incremental decoder)."""

    def __init__(self, tokenizer: BPETokenizer) -> None:
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self._tok.token_bytes(token_id))

    def flush(self) -> str:
        """Whatever is held back, as U+FFFD, at the end of the stream."""
        return self._utf8.decode(b"", final=True)


# -- chat template ------------------------------------------------------------------------------

_CHATML_SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.DOTALL)
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class ChatTemplate:
    """SmolLM2's ChatML template (the GGUF's `tokenizer.chat_template`, a Jinja string) in Python:
    `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message, a default system message first when
    the first message is not one, and `<|im_start|>assistant\\n` as the generation prompt."""

    def __init__(self, jinja_source: str | None) -> None:
        self.source = jinja_source
        self.default_system: str | None = DEFAULT_SYSTEM_PROMPT
        if jinja_source is not None:
            if "<|im_start|>" not in jinja_source or "<|im_end|>" not in jinja_source:
                raise ValueError("the GGUF's chat template is not ChatML; only ChatML is supported")
            m = _CHATML_SYSTEM.search(jinja_source)
            self.default_system = m.group(1) if m else None

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        parts: list[str] = []
        for i, message in enumerate(messages):
            try:
                role, content = message["role"], message["content"]
            except KeyError as e:
                raise ValueError(
                    f"message {i} needs 'role' and 'content' keys, got {sorted(message)}"
                ) from e
            if i == 0 and role != "system" and self.default_system is not None:
                parts.append(f"<|im_start|>system\n{self.default_system}<|im_end|>\n")
            parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)
