"""Byte-level BPE from scratch, the ChatML chat template, and a UTF-8-safe streaming decoder.

Follows GPT-2's `encoder.py` (the byte<->unicode table, merges applied by rank) and minbpe's
`RegexTokenizer` (pre-tokenize with a regex, BPE inside each piece, special tokens split out first).
Pure Python: no `tokenizers`, `transformers` or `torch`.

Merging follows the Rust `tokenizers` crate's `Word::merge_all`: a min-heap of (rank, position)
over a doubly linked list of symbols, stale entries skipped when popped, so a piece of n bytes costs
O(n log n) rather than GPT-2's O(n) rescan per merge. The result is GPT-2's, exactly (see
`merge_symbols`).

Bytes without a token: SmolLM2's vocabulary has none for 21 byte values. With `unk_id` set (what
`decoder.load_generator` does, from the GGUF's `tokenizer.ggml.unknown_token_id`) each such byte
becomes the unknown id, so no input byte vanishes -- `tokenizers`' BPE with an `unk_token` and
`fuse_unk=False`. With `unk_id=None` they are skipped before merging, as transformers' GGUF
conversion (a BPE model with no unknown token) does, so their neighbours can merge across them.

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
import heapq
import logging
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

logger = logging.getLogger(__name__)

CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
PRE_TOKENIZERS = ("gpt2", "smollm")
# The piece cache: at most this many pieces (emptied when full, so junk sent once cannot keep the
# real words out for good) of at most this many characters (real words are far shorter). Values
# are tuples: untracked by the garbage collector, whose full passes then stay short. ~10 MB full.
CACHE_MAX_PIECES = 50_000
CACHE_MAX_PIECE_CHARS = 64


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: every byte to a printable character; printable bytes map to themselves."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
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
            parts.append(
                re.escape(chr(start))
                if start == end
                else f"{re.escape(chr(start))}-{re.escape(chr(end))}"
            )
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


def merge_symbols(symbols: Sequence[str], ranks: Mapping[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges to one word's (non-empty) symbols: GPT-2's `bpe` loop (take the adjacent
    pair of lowest rank, merge every occurrence of it left to right, repeat) in O(n log n).

    As `tokenizers`' `Word::merge_all`: a min-heap of (rank, left position) over a doubly linked
    list; an entry is stale (skipped) once its pair no longer stands at that position. All entries
    of the lowest rank are taken as one batch and merged in position order, the pairs they create
    pushed after it, so even a merge list where a new pair outranks the current one gives GPT-2's
    result (a pair's rank is unique, and merging a pair never creates that same pair)."""
    sym = list(symbols)  # "" marks a symbol merged into its left neighbour
    n = len(sym)
    nxt = [*range(1, n), -1]
    prv = list(range(-1, n - 1))
    heap = [(r, i) for i in range(n - 1) if (r := ranks.get((sym[i], sym[i + 1]))) is not None]
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        batch: list[int] = []
        while heap and heap[0][0] == rank:  # pops in position order: GPT-2's left-to-right pass
            batch.append(heapq.heappop(heap)[1])
        touched: set[int] = set()
        for i in batch:
            j = nxt[i]
            if not sym[i] or j < 0 or ranks.get((sym[i], sym[j])) != rank:
                continue  # stale: an earlier merge consumed or grew one of the two symbols
            sym[i] += sym[j]
            sym[j] = ""
            k = nxt[j]
            nxt[i] = k
            if k >= 0:
                prv[k] = i
            if prv[i] >= 0:
                touched.add(prv[i])
            touched.add(i)
        for i in touched:  # the pairs the batch created: (left neighbour, merged), (merged, right)
            j = nxt[i]
            if sym[i] and j >= 0 and (r := ranks.get((sym[i], sym[j]))) is not None:
                heapq.heappush(heap, (r, i))
    return [s for s in sym if s]


class BPETokenizer:
    """Byte-level BPE over a llama.cpp vocabulary (`tokenizer.ggml.tokens/merges/token_type`).

    `unk_id`: the id a byte with no token becomes (the GGUF's `tokenizer.ggml.unknown_token_id`);
    None skips such bytes, as transformers' GGUF conversion does (see the module docstring)."""

    def __init__(
        self,
        tokens: Sequence[str],
        merges: Iterable[str],
        token_types: Sequence[int] | None = None,
        pre: str = "smollm",
        unk_id: int | None = None,
    ) -> None:
        if pre not in PRE_TOKENIZERS:
            raise ValueError(f"unknown pre-tokenizer {pre!r}; known: {', '.join(PRE_TOKENIZERS)}")
        self.pre = pre
        self._regex = gpt2_regex()
        self._digits = _digit_regex() if pre == "smollm" else None
        self.id_to_token = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.id_to_token)}
        if unk_id is not None and not 0 <= unk_id < len(self.id_to_token):
            raise ValueError(f"unk_id {unk_id} is not in the vocabulary of {len(self.id_to_token)}")
        self.unk_id = unk_id
        self.ranks: dict[tuple[str, str], int] = {}
        skipped = 0
        for rank, merge in enumerate(merges):
            a, b = merge.split(" ")
            # `tokenizers` refuses a merge whose parts or result are not tokens; skipping them keeps
            # every merged symbol in the vocabulary, so only a lone byte can lack a token.
            if a not in self.vocab or b not in self.vocab or a + b not in self.vocab:
                skipped += 1
                continue
            self.ranks[(a, b)] = rank
        if skipped:
            logger.warning("skipped %d merges with a part or result not in the vocabulary", skipped)
        types = token_types or [1] * len(self.id_to_token)
        self.special_ids = {i for i, t in enumerate(types) if t == CONTROL}
        self.special_tokens = {self.id_to_token[i]: i for i in sorted(self.special_ids)}
        alternatives = sorted(self.special_tokens, key=len, reverse=True)  # longest first
        self._special_re = (
            re.compile("(" + "|".join(map(re.escape, alternatives)) + ")") if alternatives else None
        )
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        # SmolLM2's vocabulary has no token for 21 bytes (0x04, 0x06, 0x13, 0x14, 0x16, 0x1d,
        # 0xc0, 0xc1, 0xf1, 0xf2, 0xf5..0xff): each becomes `unk_id`, or is skipped (see `_bpe`).
        self.missing_bytes = {b for b, c in self.byte_encoder.items() if c not in self.vocab}
        self._cache: dict[str, tuple[int, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    # -- encoding -------------------------------------------------------------------------------

    def _bpe(self, piece: str) -> Sequence[int]:
        """The ids of one pre-token: its bytes as byte-characters, merged by rank (`merge_symbols`),
        a byte with no token as `unk_id` (or skipped first when there is none)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = self.word_ids("".join(self.byte_encoder[b] for b in piece.encode("utf-8")))
        if len(piece) <= CACHE_MAX_PIECE_CHARS:
            if len(self._cache) >= CACHE_MAX_PIECES:
                self._cache.clear()
            self._cache[piece] = tuple(ids)
        return ids

    def word_ids(self, word: str) -> list[int]:
        """BPE on a word already spelled in byte-characters (`bytes_to_unicode`), uncached; the
        counterpart of `tokenizers`' `BPE.tokenize`."""
        vocab = self.vocab
        if self.unk_id is None:
            symbols = [c for c in word if c in vocab]  # skipped first: neighbours may then merge
            return [vocab[s] for s in merge_symbols(symbols, self.ranks)]
        # An unknown symbol is in no merge (see __init__), so it stays a barrier and becomes unk.
        unk = self.unk_id
        return [vocab.get(s, unk) for s in merge_symbols(list(word), self.ranks)]

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

    def encode(self, text: str, parse_special: bool = True) -> list[int]:
        """Text -> ids; no BOS/EOS added. `parse_special`: special-token text (`<|im_end|>`) -> its
        single id; False encodes it as ordinary text (llama.cpp's `parse_special=false`), for text
        a user wrote that must not open or close a turn."""
        return self.encode_segments([(text, parse_special)])

    def encode_segments(self, segments: Iterable[tuple[str, bool]]) -> list[int]:
        """The ids of the segments' concatenation, special-token text parsed only inside segments
        flagged True. Text between two parsed special tokens is pre-tokenized as one string, across
        segment boundaries, so the ids equal `encode("".join(texts))` whenever the unflagged
        segments hold no special-token text."""
        ids: list[int] = []
        pending: list[str] = []  # ordinary text since the last parsed special token
        for text, parse in segments:
            if not parse or self._special_re is None:
                pending.append(text)
                continue
            for i, part in enumerate(self._special_re.split(text)):
                if i % 2:  # odd parts are the captured special tokens
                    ids.extend(self.encode_ordinary("".join(pending)))
                    pending.clear()
                    ids.append(self.special_tokens[part])
                elif part:
                    pending.append(part)
        ids.extend(self.encode_ordinary("".join(pending)))
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

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
_CHATML_SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.DOTALL)
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


class ChatTemplate:
    """SmolLM2's ChatML template (the GGUF's `tokenizer.chat_template`, a Jinja string) in Python:
    `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message, a default system message first when
    the first message is not one, and `<|im_start|>assistant\\n` as the generation prompt.

    `render_segments` marks what the template writes apart from what the caller wrote (role and
    content), so `BPETokenizer.encode_segments` can parse control tokens in the former only.
    `special_tokens`: texts a role may not contain (the ChatML markers always count)."""

    def __init__(self, jinja_source: str | None, special_tokens: Iterable[str] = ()) -> None:
        self.source = jinja_source
        self.default_system: str | None = DEFAULT_SYSTEM_PROMPT
        self._forbidden_in_role = sorted({IM_START, IM_END, *special_tokens})
        if jinja_source is not None:
            if IM_START not in jinja_source or IM_END not in jinja_source:
                raise ValueError("the GGUF's chat template is not ChatML; only ChatML is supported")
            m = _CHATML_SYSTEM.search(jinja_source)
            self.default_system = m.group(1) if m else None

    def _message(self, i: int, message: Mapping[str, str]) -> tuple[str, str]:
        try:
            role, content = message["role"], message["content"]
        except (KeyError, TypeError) as e:
            keys = sorted(message) if isinstance(message, Mapping) else type(message).__name__
            raise ValueError(f"message {i} needs 'role' and 'content' keys, got {keys}") from e
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")
        # A role is written where the template expects a name: a line break or a marker in it
        # would let the caller start a turn of their own.
        if (
            not isinstance(role, str)
            or not role
            or not role.isprintable()
            or any(t in role for t in self._forbidden_in_role)
        ):
            raise ValueError(
                f"message {i}: role must be a non-empty single line of printable "
                f"text with no special tokens, got {role!r}"
            )
        return role, content

    def render_segments(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> list[tuple[str, bool]]:
        """The rendered prompt as (text, is_template) segments, in order: True for the markers,
        newlines and default system prompt the template writes, False for each role and content."""
        parts: list[tuple[str, bool]] = []
        for i, message in enumerate(messages):
            role, content = self._message(i, message)
            if i == 0 and role != "system" and self.default_system is not None:
                parts.append((f"{IM_START}system\n{self.default_system}{IM_END}\n", True))
            parts += [
                (IM_START, True),
                (role, False),
                ("\n", True),
                (content, False),
                (f"{IM_END}\n", True),
            ]
        if add_generation_prompt:
            parts.append((f"{IM_START}assistant\n", True))
        return parts

    def render(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text, as the GGUF's Jinja template renders it."""
        return "".join(text for text, _ in self.render_segments(messages, add_generation_prompt))
