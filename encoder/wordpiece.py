"""BERT WordPiece tokenizer, from scratch, identical to Hugging Face's fast `BertTokenizer`.

The pipeline follows `tokenizers` (Rust): split out literal special tokens (`[CLS]`, `[SEP]`, ...
written in the text, matched case-sensitively anywhere, even inside a word) -> BertNormalizer +
BertPreTokenizer (`encoder/normalize.py`) -> greedy longest-match-first WordPiece with `##`
continuations (`models/wordpiece/mod.rs`) -> longest-first truncation, of the end or the start
(`utils/truncation.rs`) -> `[CLS] A [SEP] (B [SEP])` (TemplateProcessing). Offsets are `str`
indices into the original text. A single text cut at its end stops tokenizing at the cut (same
result, at the kept tokens' cost).

Where we deliberately differ from what a transformers caller sees (all tested):
- `max_length` too small for the special tokens raises ValueError; the reference logs an error
  and returns the text untruncated.
- `text_pair=""` is an empty second sequence (`[CLS] A [SEP] [SEP]`), as in the Rust core and
  transformers' batch call; transformers' single-text call alone drops a falsy pair.
- A lone surrogate raises ValueError (the reference raises TypeError).

Reads `vocab.txt` and `tokenizer_config.json` only. Pure Python + numpy: no torch, no tokenizers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semsearch.encoder.normalize import BertNormalizer

logger = logging.getLogger(__name__)

CONTINUATION = "##"
MAX_INPUT_CHARS_PER_WORD = 100
_WORD_CACHE_SIZE = 1 << 16  # pre-tokens; ~10 MB when full
_WORD_CACHE_MAX_CHARS = 48  # longer pre-tokens (hashes, base64) bypass the cache: rare, and big
# A truncating encode reads the text in windows of first this many characters per kept piece
# plus a minimum (running English is ~5 characters a piece), then twice as many each time.
_WINDOW_PER_PIECE = 8
_WINDOW_MIN = 64
# The WordPiece decoder's per-token cleanup (tokenizers `decoders/wordpiece.rs`), in its order.
_CLEANUP = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip

Offsets = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Encoding:
    """One encoded text (or pair): parallel lists, one entry per token."""

    ids: list[int]
    type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]  # into the original text (a pair's B: into B); (0, 0) specials
    special_tokens_mask: list[int]  # 1 for [CLS]/[SEP]/padding added by the tokenizer

    def __len__(self) -> int:
        return len(self.ids)


def _special_token(config: dict, key: str, default: str) -> str:
    value = config.get(key, default)
    if isinstance(value, dict):  # {"content": "[UNK]", "lstrip": false, ...}
        value = value.get("content", default)
    if not isinstance(value, str):
        raise ValueError(f"tokenizer_config.json: {key} must be a string, got {value!r}")
    return value


def _truncated_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Longest-first lengths for a pair, exactly as `tokenizers` computes them.

    The shorter side keeps its length if the longer one can absorb the cut; otherwise both get
    half the budget and the longer side (the second one on a tie) gets the odd token.
    """
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    short, long_ = (n2, n1) if swap else (n1, n2)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short = budget // 2
        long_ = short + budget % 2
    return (long_, short) if swap else (short, long_)


class WordPieceTokenizer:
    """Greedy longest-match-first WordPiece over BERT normalization; see the module docstring."""

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD,
        model_max_length: int = 512,
        vocab_sha256: str = "",
    ) -> None:
        missing = [t for t in (unk_token, sep_token, pad_token, cls_token) if t not in vocab]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the vocabulary")
        self.vocab = vocab
        self.vocab_size = len(vocab)
        self.vocab_sha256 = vocab_sha256
        self.model_max_length = model_max_length
        self.max_input_chars_per_word = max_input_chars_per_word
        self.id_to_token: list[str] = [""] * (max(vocab.values()) + 1)
        for token, idx in vocab.items():
            self.id_to_token[idx] = token
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        self.unk_token_id = vocab[unk_token]
        self.sep_token_id = vocab[sep_token]
        self.pad_token_id = vocab[pad_token]
        self.cls_token_id = vocab[cls_token]
        specials = [unk_token, sep_token, pad_token, cls_token, mask_token]
        self.special_tokens = {t: vocab[t] for t in specials if t in vocab}
        self.all_special_ids = frozenset(self.special_tokens.values())
        # Leftmost-longest match of the literal special tokens, on the raw text.
        alternatives = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, alternatives)))
        self._special_firsts = frozenset(t[0] for t in alternatives)
        self._special_longest = len(alternatives[0])
        self.normalizer = BertNormalizer(
            lowercase=lowercase,
            strip_accents=strip_accents,
            handle_chinese_chars=tokenize_chinese_chars,
        )
        self._max_piece = max(
            len(t) - len(CONTINUATION) if t.startswith(CONTINUATION) else len(t) for t in vocab
        )
        self._word = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._word_uncached)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike) -> WordPieceTokenizer:
        """Load `vocab.txt` and (if present) `tokenizer_config.json` from a model directory."""
        root = Path(model_dir)
        vocab_path = root / "vocab.txt"
        if not vocab_path.is_file():
            raise FileNotFoundError(f"no vocab.txt in {root}; expected a BERT model directory")
        raw = vocab_path.read_bytes()
        lines = raw.decode("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline
        # One token per line, id = line number; a repeated token keeps its last line (as HF does).
        vocab = {line.rstrip("\r"): idx for idx, line in enumerate(lines)}
        config_path = root / "tokenizer_config.json"
        config = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
        lowercase = bool(config.get("do_lower_case", True))
        strip_accents = config.get("strip_accents")
        tokenizer = cls(
            vocab,
            lowercase=lowercase,
            strip_accents=None if strip_accents is None else bool(strip_accents),
            tokenize_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
            unk_token=_special_token(config, "unk_token", "[UNK]"),
            sep_token=_special_token(config, "sep_token", "[SEP]"),
            pad_token=_special_token(config, "pad_token", "[PAD]"),
            cls_token=_special_token(config, "cls_token", "[CLS]"),
            mask_token=_special_token(config, "mask_token", "[MASK]"),
            model_max_length=int(config.get("model_max_length", 512)),
            vocab_sha256=hashlib.sha256(raw).hexdigest(),
        )
        logger.debug("loaded WordPiece vocab of %d from %s", tokenizer.vocab_size, root)
        return tokenizer

    # -- the WordPiece model ------------------------------------------------------------------

    def _word_uncached(self, word: str) -> int | tuple[tuple[int, ...], Offsets]:
        """One pre-token (raw text) -> its piece ids and offsets relative to the pre-token; just
        the id when it is one piece spanning the whole pre-token (the common case)."""
        limit = self.max_input_chars_per_word
        if len(word) > limit:
            # One [UNK] if it normalizes to over `limit` characters: only its ends are needed.
            ends = self.normalizer.long_word_ends(word, limit)
            if ends is not None:
                if ends == (0, len(word) - 1):
                    return self.unk_token_id
                return (self.unk_token_id,), ((ends[0], ends[1] + 1),)
        text, align = self.normalizer.normalize_word(word)
        n = len(text)
        if n == 0:
            return (), ()
        if n > self.max_input_chars_per_word:
            spans = [(self.unk_token_id, 0, n)]
        else:
            spans = self._pieces(text)
        ids = tuple(s[0] for s in spans)
        if align is None:
            offsets = tuple((s[1], s[2]) for s in spans)
        else:
            offsets = tuple((align[s[1]], align[s[2] - 1] + 1) for s in spans)
        if offsets == ((0, len(word)),):
            return ids[0]
        return ids, offsets

    def _pieces(self, text: str) -> list[tuple[int, int, int]]:
        """Greedy longest-match-first: (id, start, end) per piece; the whole word is [UNK] if any
        position has no match."""
        vocab = self.vocab
        n = len(text)
        spans: list[tuple[int, int, int]] = []
        start = 0
        while start < n:
            end = min(n, start + self._max_piece)
            idx = None
            while end > start:
                piece = text[start:end]
                idx = vocab.get(CONTINUATION + piece if start else piece)
                if idx is not None:
                    break
                end -= 1
            if idx is None:
                return [(self.unk_token_id, 0, n)]
            spans.append((idx, start, end))
            start = end
        return spans

    def _tokenize(
        self, text: str, limit: int | None = None
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Text -> piece ids and offsets, no special tokens added; with `limit`, only the first
        `limit` pieces, at the cost of those (see `_tokenize_prefix`)."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str to tokenize, got {type(text).__name__}")
        # The whole text, even past a cut: invalid input is refused whatever max_length says.
        # UTF-8 encoding fails on surrogates and nothing else; a C-level pass, 2-5 ms for 2 MB
        # of non-ASCII text where a regex search takes 10.
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "text contains a lone surrogate (e.g. from a bad \\ud800 escape); it is not "
                    "valid Unicode text and cannot be tokenized: decode the input with "
                    "errors='replace'"
                ) from None
        if limit is not None:
            return self._tokenize_prefix(text, limit)
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        if any(c in text for c in self._special_firsts):
            pos = 0
            for m in self._special_re.finditer(text):
                self._tokenize_span(text, pos, m.start(), ids, offsets)
                ids.append(self.special_tokens[m.group()])
                offsets.append(m.span())
                pos = m.end()
            self._tokenize_span(text, pos, len(text), ids, offsets)
        else:
            self._tokenize_span(text, 0, len(text), ids, offsets)
        return ids, offsets

    def _tokenize_prefix(self, text: str, limit: int) -> tuple[list[int], list[tuple[int, int]]]:
        """The first `limit` pieces of `text`, reading it only about as far as they reach.

        Equal to tokenizing it all and cutting, since pieces come out left to right. The text is
        read in windows (doubling, from `_WINDOW_PER_PIECE` characters a kept piece) that end on
        a pre-token boundary; in each, the leftmost special token is searched for and the
        pre-tokens before it are tokenized until `limit` pieces are in. So a 2 MB text cut to
        256 pieces costs about what its first kilobytes do; what can still read past the cut is
        C-level (the extent of a pre-token, the search for a special token across a window).
        """
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        n = len(text)
        word_re, special_re = self.normalizer.word_re, self._special_re
        reach = self._special_longest - 1  # a special token starting before hi ends by hi+reach
        pos = hi = 0
        window = _WINDOW_PER_PIECE * limit + _WINDOW_MIN
        while pos < n and len(ids) < limit:
            if pos >= hi:  # the next window: [pos, hi)
                hi = min(n, pos + window)
                window *= 2
                if hi < n:
                    # End on a pre-token boundary: a run of word characters through hi-1 is
                    # read to its end (a match from inside a run ends where the run does).
                    run = word_re.match(text, hi - 1)
                    if run is not None:
                        hi = run.end()
            # Leftmost special token starting before hi (the same as a whole-text search finds:
            # it fits before hi+reach, and longer alternatives are tried first).
            special = special_re.search(text, pos, hi + reach)
            if special is not None and special.start() >= hi:
                special = None
            end = hi if special is None else special.start()
            if self._tokenize_span(text, pos, end, ids, offsets, limit):
                break
            if special is None:
                pos = hi
            else:
                ids.append(self.special_tokens[special.group()])
                offsets.append(special.span())
                pos = special.end()
        if len(ids) > limit:  # the last word's pieces went past the cut
            del ids[limit:], offsets[limit:]
        return ids, offsets

    def _tokenize_span(
        self,
        text: str,
        start: int,
        end: int,
        ids: list[int],
        offsets: list[tuple[int, int]],
        limit: int = sys.maxsize,
    ) -> bool:
        """Append the pieces of the pre-tokens of `text[start:end]`; True when `ids` reached
        `limit` pieces (the rest of the span is then left unread: finditer is lazy)."""
        word, uncached = self._word, self._word_uncached
        for m in self.normalizer.word_re.finditer(text, start, end):
            w = m.group()
            pieces = word(w) if len(w) <= _WORD_CACHE_MAX_CHARS else uncached(w)
            if pieces.__class__ is int:
                ids.append(pieces)
                offsets.append(m.span())
            else:
                piece_ids, piece_offsets = pieces
                if not piece_ids:
                    continue
                s = m.start()
                ids.extend(piece_ids)
                offsets.extend([(s + a, s + b) for a, b in piece_offsets])
            if len(ids) >= limit:
                return True
        return False

    # -- public API ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """WordPiece strings of `text`, no special tokens added."""
        id_to_token = self.id_to_token
        return [id_to_token[i] for i in self._tokenize(text)[0]]

    def encode(
        self,
        text: str,
        text_pair: str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        truncation_side: str = "right",
    ) -> Encoding:
        """Encode a text or a pair; `max_length` truncates longest-first to that many tokens,
        special tokens included, cutting each sequence's end (`truncation_side="right"`) or its
        start (`"left"`, transformers' name; `tokenizers`' direction). `text_pair=""` is an
        (empty) second sequence, not "no pair".

        A single text cut on the right costs what the kept tokens cost, not the text's length
        (a 2 MB text cut to 256 tokens takes milliseconds): tokenization stops at the cut. A text
        cut on the left, and a pair, are tokenized in full before they are cut.
        """
        if truncation_side not in ("right", "left"):
            raise ValueError(f"truncation_side must be 'right' or 'left', got {truncation_side!r}")
        left = truncation_side == "left"
        if text_pair is None:
            budget = None
            if max_length is not None:
                budget = max_length - (2 if add_special_tokens else 0)
                if budget < 0:
                    raise ValueError(f"max_length={max_length} leaves no room for [CLS] and [SEP]")
            if left:
                ids_a, offs_a = self._tokenize(text)
                if budget is not None and len(ids_a) > budget:
                    cut = len(ids_a) - budget
                    del ids_a[:cut], offs_a[:cut]
            else:
                ids_a, offs_a = self._tokenize(text, budget)
            if not add_special_tokens:
                n = len(ids_a)
                return Encoding(ids_a, [0] * n, [1] * n, offs_a, [0] * n)
            n = len(ids_a) + 2
            return Encoding(
                [self.cls_token_id, *ids_a, self.sep_token_id],
                [0] * n,
                [1] * n,
                [(0, 0), *offs_a, (0, 0)],
                [1, *([0] * len(ids_a)), 1],
            )
        ids_a, offs_a = self._tokenize(text)
        ids_b, offs_b = self._tokenize(text_pair)
        if max_length is not None:
            budget = max_length - (3 if add_special_tokens else 0)
            if budget < 0:
                raise ValueError(f"max_length={max_length} leaves no room for [CLS] [SEP] [SEP]")
            n1, n2 = _truncated_lengths(len(ids_a), len(ids_b), budget)
            if left:
                cut_a, cut_b = len(ids_a) - n1, len(ids_b) - n2
                del ids_a[:cut_a], offs_a[:cut_a], ids_b[:cut_b], offs_b[:cut_b]
            else:
                del ids_a[n1:], offs_a[n1:], ids_b[n2:], offs_b[n2:]
        na, nb = len(ids_a), len(ids_b)
        if not add_special_tokens:
            return Encoding(
                ids_a + ids_b,
                [0] * na + [1] * nb,
                [1] * (na + nb),
                offs_a + offs_b,
                [0] * (na + nb),
            )
        cls, sep = self.cls_token_id, self.sep_token_id
        return Encoding(
            [cls, *ids_a, sep, *ids_b, sep],
            [0] * (na + 2) + [1] * (nb + 1),
            [1] * (na + nb + 3),
            [(0, 0), *offs_a, (0, 0), *offs_b, (0, 0)],
            [1, *([0] * na), 1, *([0] * nb), 1],
        )

    def encode_batch(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        add_special_tokens: bool = True,
        truncation_side: str = "right",
    ) -> list[Encoding]:
        """`encode` each text (no pairs, no padding); see `pad`. With `max_length` and the right
        side, each text costs what its kept tokens cost (see `encode`)."""
        return [
            self.encode(t, None, max_length, add_special_tokens, truncation_side) for t in texts
        ]

    def pad(
        self, encodings: Sequence[Encoding], pad_to: int | None = None
    ) -> dict[str, np.ndarray]:
        """Right-pad to the longest encoding (or `pad_to`): int64 arrays of shape (B, T)."""
        longest = max((len(e) for e in encodings), default=0)
        T = longest if pad_to is None else pad_to
        if T < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest encoding ({longest})")
        B = len(encodings)
        input_ids = np.full((B, T), self.pad_token_id, dtype=np.int64)  # (B, T)
        attention_mask = np.zeros((B, T), dtype=np.int64)  # (B, T)
        token_type_ids = np.zeros((B, T), dtype=np.int64)  # (B, T)
        for row, e in enumerate(encodings):
            n = len(e)
            input_ids[row, :n] = e.ids
            attention_mask[row, :n] = e.attention_mask
            token_type_ids[row, :n] = e.type_ids
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text like the fast tokenizer's WordPiece decoder: `##` pieces glued to the
        previous one, others after a space, then its per-token punctuation cleanup."""
        id_to_token = self.id_to_token
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(id_to_token):
                raise ValueError(
                    f"token id {i} is out of range for a vocabulary of {len(id_to_token)}"
                )
            if skip_special_tokens and i in self.all_special_ids:
                continue
            tokens.append(id_to_token[i])
        out = []
        for k, token in enumerate(tokens):
            if k:
                token = token[2:] if token.startswith(CONTINUATION) else " " + token
            for dirty, clean in _CLEANUP:
                token = token.replace(dirty, clean)
            out.append(token)
        return "".join(out)
