"""BERT normalization and pre-tokenization, character for character as HF `tokenizers` does it.

Follows `tokenizers/src/normalizers/bert.rs` (BertNormalizer) and `pre_tokenizers/bert.rs`
(BertPreTokenizer), in the reference's order: clean text (drop controls, fold whitespace to " "),
put spaces around CJK ideographs, NFD + drop non-spacing marks (strip accents), lowercase; then
split on whitespace and isolate every punctuation character.

The character classes are the reference's, not today's Unicode. Its Rust crates classify with older
tables than Python's `unicodedata` (14.0 in Python 3.11):

- "control" (dropped) and "non-spacing mark" (stripped) and "punctuation" come from the
  `unicode_categories` crate, i.e. Unicode 8.0: marks, format characters and punctuation added since
  are ordinary letters to it, and unassigned code points (U+FFFF and the other non-characters) are
  kept, so they end up as `[UNK]`. The three tables below are those sets, written out as ranges, so
  the result does not depend on the Python version's Unicode database.
- whitespace is Rust's `char::is_whitespace` (the White_Space property) minus what "control" drops
  first (U+000B, U+000C, U+0085), so U+00A0, U+3000, U+2028 ... separate words.
- the CJK block list has a gap at U+2B820..U+2B91F (Python BERT's list does not).
- NFD comes from `unicodedata` except U+11938, which the reference's older tables do not decompose.
- lowercasing is Rust's `char::to_lowercase` one character at a time: no Greek final sigma, and
  Unicode 16 letters (Python 3.11 does not know them) are lowercased from a small table.

`tests/conformance/test_wordpiece_conformance.py` checks every code point against the reference.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Dropped by clean_text (besides U+0000 and U+FFFD, which are in the list): Cc except \t \n \r, Cf
# and Co as the reference's Unicode 8.0 tables have them.
_REMOVE = (
    "0000-0008 000B-000C 000E-001F 007F-009F 00AD 0600-0605 061C 06DD 070F 180E 200B-200F "
    "202A-202E 2060-2064 2066-206F E000-F8FF FEFF FFF9-FFFB FFFD 110BD 1BCA0-1BCA3 1D173-1D17A "
    "E0001 E0020-E007F F0000-FFFFD 100000-10FFFD "
)
# Stripped with the accents (after NFD): Mn as of Unicode 8.0. Characters whose canonical
# decomposition is made of these (U+0340, U+0344 ...) vanish as well.
_MARKS = (
    "0300-033F 0342 0345-036F 0483-0487 0591-05BD 05BF 05C1-05C2 05C4-05C5 05C7 0610-061A "
    "064B-065F 0670 06D6-06DC 06DF-06E4 06E7-06E8 06EA-06ED 0711 0730-074A 07A6-07B0 07EB-07F3 "
    "0816-0819 081B-0823 0825-0827 0829-082D 0859-085B 08E3-0902 093A 093C 0941-0948 094D "
    "0951-0957 0962-0963 0981 09BC 09C1-09C4 09CD 09E2-09E3 0A01-0A02 0A3C 0A41-0A42 0A47-0A48 "
    "0A4B-0A4D 0A51 0A70-0A71 0A75 0A81-0A82 0ABC 0AC1-0AC5 0AC7-0AC8 0ACD 0AE2-0AE3 0B01 0B3C "
    "0B3F 0B41-0B44 0B4D 0B56 0B62-0B63 0B82 0BC0 0BCD 0C00 0C3E-0C40 0C46-0C47 0C4A-0C4D "
    "0C55-0C56 0C62-0C63 0C81 0CBC 0CBF 0CC6 0CCC-0CCD 0CE2-0CE3 0D01 0D41-0D44 0D4D 0D62-0D63 "
    "0DCA 0DD2-0DD4 0DD6 0E31 0E34-0E3A 0E47-0E4E 0EB1 0EB4-0EB9 0EBB-0EBC 0EC8-0ECD 0F18-0F19 "
    "0F35 0F37 0F39 0F71-0F72 0F74 0F77 0F79-0F7E 0F80 0F82-0F84 0F86-0F87 0F8D-0F92 0F94-0F97 "
    "0F99-0F9C 0F9E-0FA1 0FA3-0FA6 0FA8-0FAB 0FAD-0FB8 0FBA-0FBC 0FC6 102D-1030 1032-1037 "
    "1039-103A 103D-103E 1058-1059 105E-1060 1071-1074 1082 1085-1086 108D 109D 135D-135F "
    "1712-1714 1732-1734 1752-1753 1772-1773 17B4-17B5 17B7-17BD 17C6 17C9-17D3 17DD 180B-180D "
    "18A9 1920-1922 1927-1928 1932 1939-193B 1A17-1A18 1A1B 1A56 1A58-1A5E 1A60 1A62 1A65-1A6C "
    "1A73-1A7C 1A7F 1AB0-1ABD 1B00-1B03 1B34 1B36-1B3A 1B3C 1B42 1B6B-1B73 1B80-1B81 1BA2-1BA5 "
    "1BA8-1BA9 1BAB-1BAD 1BE6 1BE8-1BE9 1BED 1BEF-1BF1 1C2C-1C33 1C36-1C37 1CD0-1CD2 1CD4-1CE0 "
    "1CE2-1CE8 1CED 1CF4 1CF8-1CF9 1DC0-1DF5 1DFC-1DFF 20D0-20DC 20E1 20E5-20F0 2CEF-2CF1 2D7F "
    "2DE0-2DFF 302A-302D 3099-309A A66F A674-A67D A69E-A69F A6F0-A6F1 A802 A806 A80B A825-A826 "
    "A8C4 A8E0-A8F1 A926-A92D A947-A951 A980-A982 A9B3 A9B6-A9B9 A9BC A9E5 AA29-AA2E AA31-AA32 "
    "AA35-AA36 AA43 AA4C AA7C AAB0 AAB2-AAB4 AAB7-AAB8 AABE-AABF AAC1 AAEC-AAED AAF6 ABE5 ABE8 "
    "ABED FB1E FE00-FE0F FE20-FE2F 101FD 102E0 10376-1037A 10A01-10A03 10A05-10A06 10A0C-10A0F "
    "10A38-10A3A 10A3F 10AE5-10AE6 11001 11038-11046 1107F-11081 110B3-110B6 110B9-110BA "
    "11100-11102 11127-1112B 1112D 11130-11134 11173 11180-11181 111B6-111BE 111CA-111CC "
    "1122F-11231 11234 11236-11237 112DF 112E3-112EA 11300-11301 1133C 11340 11366-1136C "
    "11370-11374 114B3-114B8 114BA 114BF-114C0 114C2-114C3 115B2-115B5 115BC-115BD 115BF-115C0 "
    "115DC-115DD 11633-1163A 1163D 1163F-11640 116AB 116AD 116B0-116B5 116B7 1171D-1171F "
    "11722-11725 11727-1172B 16AF0-16AF4 16B30-16B36 16F8F-16F92 1BC9D-1BC9E 1D167-1D169 "
    "1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1DA00-1DA36 1DA3B-1DA6C 1DA75 1DA84 "
    "1DA9B-1DA9F 1DAA1-1DAAF 1E8D0-1E8D6 E0100-E01EF "
)
# Isolated as single-character words: ASCII punctuation and P* as of Unicode 8.0.
_PUNCT = (
    "0021-002F 003A-0040 005B-0060 007B-007E 00A1 00A7 00AB 00B6-00B7 00BB 00BF 037E 0387 "
    "055A-055F 0589-058A 05BE 05C0 05C3 05C6 05F3-05F4 0609-060A 060C-060D 061B 061E-061F "
    "066A-066D 06D4 0700-070D 07F7-07F9 0830-083E 085E 0964-0965 0970 0AF0 0DF4 0E4F 0E5A-0E5B "
    "0F04-0F12 0F14 0F3A-0F3D 0F85 0FD0-0FD4 0FD9-0FDA 104A-104F 10FB 1360-1368 1400 166D-166E "
    "169B-169C 16EB-16ED 1735-1736 17D4-17D6 17D8-17DA 1800-180A 1944-1945 1A1E-1A1F 1AA0-1AA6 "
    "1AA8-1AAD 1B5A-1B60 1BFC-1BFF 1C3B-1C3F 1C7E-1C7F 1CC0-1CC7 1CD3 2010-2027 2030-2043 "
    "2045-2051 2053-205E 207D-207E 208D-208E 2308-230B 2329-232A 2768-2775 27C5-27C6 27E6-27EF "
    "2983-2998 29D8-29DB 29FC-29FD 2CF9-2CFC 2CFE-2CFF 2D70 2E00-2E2E 2E30-2E42 3001-3003 "
    "3008-3011 3014-301F 3030 303D 30A0 30FB A4FE-A4FF A60D-A60F A673 A67E A6F2-A6F7 A874-A877 "
    "A8CE-A8CF A8F8-A8FA A8FC A92E-A92F A95F A9C1-A9CD A9DE-A9DF AA5C-AA5F AADE-AADF AAF0-AAF1 "
    "ABEB FD3E-FD3F FE10-FE19 FE30-FE52 FE54-FE61 FE63 FE68 FE6A-FE6B FF01-FF03 FF05-FF0A "
    "FF0C-FF0F FF1A-FF1B FF1F-FF20 FF3B-FF3D FF3F FF5B FF5D FF5F-FF65 10100-10102 1039F 103D0 "
    "1056F 10857 1091F 1093F 10A50-10A58 10A7F 10AF0-10AF6 10B39-10B3F 10B99-10B9C 11047-1104D "
    "110BB-110BC 110BE-110C1 11140-11143 11174-11175 111C5-111C9 111CD 111DB 111DD-111DF "
    "11238-1123D 112A9 114C6 115C1-115D7 11641-11643 1173C-1173E 12470-12474 16A6E-16A6F 16AF5 "
    "16B37-16B3B 16B44 1BC9F 1DA87-1DA8B "
)
# Folded to " " by clean_text, then split on.
_SPACE = (
    "\t\n\r \u00a0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
# Isolated like words of their own (padded with spaces) when handle_chinese_chars is on.
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)  # fmt: skip
# Not punctuation themselves, but NFD + mark stripping leaves one punctuation character.
_NFD_TO_PUNCT = (0x1FEF, 0x2260, 0x226E, 0x226F)
# The reference's NFD does not decompose these (its tables predate them).
_NFD_KEEP = frozenset("\U00011938")
# Rust's to_lowercase knows these Unicode 16 letters; Python 3.11 does not: (first, last, delta).
_LOWER_EXTRA = (
    (0x1C89, 0x1C89, 1), (0xA7CB, 0xA7CB, -42343), (0xA7CC, 0xA7CC, 1), (0xA7CE, 0xA7CE, 1),
    (0xA7D2, 0xA7D2, 1), (0xA7D4, 0xA7D4, 1), (0xA7DA, 0xA7DA, 1), (0xA7DC, 0xA7DC, -42561),
    (0x10D50, 0x10D65, 32), (0x16EA0, 0x16EB8, 27),
)  # fmt: skip
_CHAR_CACHE_MAX = 65_536


def parse_ranges(spec: str) -> list[tuple[int, int]]:
    """`"0300-036F 0483"` -> `[(0x300, 0x36F), (0x483, 0x483)]`."""
    out = []
    for item in spec.split():
        first, _, last = item.partition("-")
        out.append((int(first, 16), int(last or first, 16)))
    return out


def _regex_class(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    """The body of a regex character class (no brackets) matching the given code point ranges."""
    parts = []
    for first, last in ranges:
        a, b = re.escape(chr(first)), re.escape(chr(last))
        parts.append(a if first == last else f"{a}-{b}")
    return "".join(parts)


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The code points U+0000..U+10FFFF not in `ranges` (which may overlap), as sorted ranges."""
    out = []
    nxt = 0
    for first, last in sorted(ranges):
        if first > nxt:
            out.append((nxt, first - 1))
        nxt = max(nxt, last + 1)
    if nxt <= 0x10FFFF:
        out.append((nxt, 0x10FFFF))
    return out


def _word_regex(isolate: list[tuple[int, int]]) -> re.Pattern[str]:
    """Pre-tokens: a run of word characters (neither whitespace nor in `isolate`) or one isolated
    character; the same matches as `[^{space}{iso}]+|[{iso}]`, faster.

    re tests a character against a class's bitmap of the Basic Multilingual Plane, then against
    each of its astral ranges in turn, so every class with astral ranges (~50 here) is slow to
    miss. Hence: isolated BMP characters first (bitmap only), whitespace turned away by a
    bitmap-only lookahead, and word characters as a positive class, which a BMP word character
    hits in the bitmap (the negated class walked all the astral ranges for every one: 2 MB of
    "a" took 115 ms, now 2; real text ~1.5x faster). Only astral characters walk ranges.
    """
    space = [(ord(c), ord(c)) for c in _SPACE]
    word = _regex_class(_complement(isolate + space))
    iso_bmp = _regex_class([(a, min(b, 0xFFFF)) for a, b in isolate if a <= 0xFFFF])
    iso_astral = _regex_class([(max(a, 0x10000), b) for a, b in isolate if b > 0xFFFF])
    words = f"[{word}]+" + (f"|[{iso_astral}]" if iso_astral else "")
    return re.compile(f"[{iso_bmp}]|(?=[^{re.escape(_SPACE)}])(?:{words})")


def is_cjk(cp: int) -> bool:
    return any(first <= cp <= last for first, last in _CJK)


class BertNormalizer:
    """BertNormalizer + BertPreTokenizer with character alignment back to the input.

    `word_re` splits raw text into pre-tokens: runs of word characters (controls and marks inside a
    run are kept and dropped later, they do not split it) and single isolated characters
    (punctuation, CJK). `normalize_word` turns one pre-token into its normalized form plus, for
    each normalized character, the index of the input character it came from.
    """

    def __init__(
        self,
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
    ) -> None:
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        isolate = parse_ranges(_PUNCT)
        if self.strip_accents:
            isolate += [(cp, cp) for cp in _NFD_TO_PUNCT]
        if handle_chinese_chars:
            isolate += list(_CJK)
        self._isolate = isolate
        self.word_re = _word_regex(isolate)
        self._remove_re = re.compile(f"[{_regex_class(parse_ranges(_REMOVE))}]")
        self._space = frozenset(_SPACE)
        self._marks = {
            cp: None for first, last in parse_ranges(_MARKS) for cp in range(first, last + 1)
        }  # str.translate table: delete
        self._lower_extra = {
            cp: chr(cp + delta)
            for first, last, delta in _LOWER_EXTRA
            for cp in range(first, last + 1)
        }
        self._char_cache: dict[str, str] = {}

    def normalize_char(self, c: str) -> str:
        """One input character -> its normalized characters ("" when dropped). No CJK padding."""
        if self._remove_re.match(c):
            return ""
        if c in self._space:
            return " "
        out = c
        if self.strip_accents:
            if c not in _NFD_KEEP:
                out = unicodedata.normalize("NFD", c)
            out = out.translate(self._marks)
        if self.lowercase:
            # One character at a time, like Rust's char::to_lowercase (no final-sigma rule).
            out = "".join(self._lower_extra.get(ord(x)) or x.lower() for x in out)
        return out

    def normalize_word(self, word: str) -> tuple[str, list[int] | None]:
        """A pre-token -> (normalized text, input index of each normalized char or None if 1:1)."""
        if word.isascii() and word.isprintable():
            return (word.lower() if self.lowercase else word), None
        cache = self._char_cache
        chars: list[str] = []
        align: list[int] = []
        for i, c in enumerate(word):
            n = cache.get(c)
            if n is None:
                n = self.normalize_char(c)
                if len(cache) >= _CHAR_CACHE_MAX:
                    cache.clear()
                cache[c] = n
            for ch in n:
                chars.append(ch)
                align.append(i)
        if self.strip_accents and len(chars) > 1:
            _reorder_marks(chars, align)
        return "".join(chars), align

    def long_word_ends(self, word: str, limit: int) -> tuple[int, int] | None:
        """For a pre-token whose normalized form is longer than `limit` characters: the input
        indices of its first and last normalized characters, as `normalize_word`'s alignment has
        them; None when it is `limit` characters or shorter (then `normalize_word` it).

        Normalizes the word from its two ends only as far as that takes, so that a huge word
        (a 2 MB run of letters is one [UNK]) costs what its ends do, not a pass per character.
        Marks are reordered in runs of combining characters, so each end is read up to a
        non-combining character: the first and last runs are then whole.
        """
        n = len(word)
        if word.isascii() and word.isprintable():
            return (0, n - 1) if n > limit else None
        combining = unicodedata.combining
        chars: list[str] = []
        align: list[int] = []
        solid = False  # a non-combining character is in `chars`
        i = 0
        while i < n and (len(chars) <= limit or not solid):
            for ch in self._normalize_cached(word[i]):
                chars.append(ch)
                align.append(i)
                solid = solid or not combining(ch)
            i += 1
        if len(chars) <= limit:
            return None
        if self.strip_accents:
            _reorder_marks(chars, align)
        first = align[0]
        if i == n:
            return first, align[-1]
        tail: list[str] = []  # the normalized characters of word[j], from the end backwards
        j = n
        while j > i:
            j -= 1
            normalized = self._normalize_cached(word[j])
            tail.append(normalized)
            if any(not combining(ch) for ch in normalized):
                break
        else:
            # Only combining characters after the front part: the last run may reach into it.
            _, full = self.normalize_word(word)
            assert full is not None  # not printable ASCII, so aligned
            return first, full[-1]
        chars = []
        align = []
        for k, normalized in enumerate(reversed(tail)):
            chars.extend(normalized)
            align.extend([j + k] * len(normalized))
        if self.strip_accents:
            _reorder_marks(chars, align)
        return first, align[-1]

    def _normalize_cached(self, c: str) -> str:
        """`normalize_char` through the per-character cache `normalize_word` uses."""
        n = self._char_cache.get(c)
        if n is None:
            n = self.normalize_char(c)
            if len(self._char_cache) >= _CHAR_CACHE_MAX:
                self._char_cache.clear()
            self._char_cache[c] = n
        return n

    def split(self, text: str, start: int = 0, end: int | None = None) -> Iterator[re.Match[str]]:
        """Pre-tokens of `text[start:end]` as matches (spans index `text`)."""
        return self.word_re.finditer(text, start, len(text) if end is None else end)

    def normalize(self, text: str) -> str:
        """The whole-text normalized string, as the reference's `normalize_str` gives it."""
        chars: list[str] = []
        align: list[int] = []
        for i, c in enumerate(text):
            n = self.normalize_char(c)
            if self.handle_chinese_chars and is_cjk(ord(c)):
                n = f" {n} "
            chars.extend(n)
            align.extend([i] * len(n))
        if self.strip_accents:
            _reorder_marks(chars, align)
        return "".join(chars)


def _reorder_marks(chars: list[str], align: list[int]) -> None:
    """NFD's canonical ordering across input characters: sort each run of combining marks by class.

    Per-character NFD cannot see a mark that follows another input character's mark; the
    reference normalizes the whole string, so runs that span characters are sorted here (stable).
    """
    combining = unicodedata.combining
    n = len(chars)
    i = 0
    while i < n:
        if not combining(chars[i]):
            i += 1
            continue
        j = i + 1
        while j < n and combining(chars[j]):
            j += 1
        if j - i > 1:
            run = sorted(range(i, j), key=lambda k: combining(chars[k]))
            chars[i:j] = [chars[k] for k in run]
            align[i:j] = [align[k] for k in run]
        i = j
