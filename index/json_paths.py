"""Metadata as SQLite stores it: its JSON text, and the JSON paths that address one key or a path
of nested keys in it. A path is only ever bound as a parameter, never pasted into SQL."""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from typing import Any

from semsearch.index.errors import InvalidDocument


def storable(text: Any) -> bool:
    """False for a string SQLite cannot take (a lone surrogate has no UTF-8 form)."""
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def encode_metadata(metadata: dict[str, Any]) -> str:
    """The JSON text stored for a document's metadata; never NaN or Infinity (not JSON)."""
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False)


_probe_lock = threading.Lock()
_probe_con: sqlite3.Connection | None = None


@functools.lru_cache(maxsize=4_096)
def json_key_path(key: str) -> str | None:
    """The SQLite JSON path of top-level key `key` in stored metadata; None if none exists.

    The path is always bound as a parameter, never pasted into SQL. SQLite spells a key
    `$."key"`; from 3.45 on, JSON escapes inside the quotes are decoded (`$."a\\"b"` is `a"b`),
    but older versions compare the key verbatim with the stored (escaped) label text and end it
    at the first `"`, so there a key holding `"` is only reachable unquoted (`$.a\\"b`), which
    in turn cannot hold `.` or `[`. Rather than trusting a version number, each candidate is
    tried on a probe object written by `encode_metadata`, with look-alike keys placed first: a
    path is used only if it finds exactly this key.
    """
    if not storable(key):
        return None
    escaped = json.dumps(key, ensure_ascii=False)[1:-1]  # the label as stored, escapes and all
    candidates = [f'$."{escaped}"']
    if escaped and "." not in escaped and "[" not in escaped:
        candidates.append(f"$.{escaped}")
    cut = min((i for i, c in enumerate(key) if c in '"\\.[\x00'), default=len(key))
    decoys = {d: 0 for d in (escaped, key[:cut], key.replace('"', "")) if d != key}
    probe = encode_metadata({**decoys, key: 1})
    global _probe_con
    with _probe_lock:
        if _probe_con is None:
            _probe_con = sqlite3.connect(":memory:", check_same_thread=False)
        for path in candidates:
            try:
                found = _probe_con.execute("SELECT json_extract(?, ?)", (probe, path)).fetchone()
            except sqlite3.Error:
                continue  # a path this SQLite cannot parse
            if found[0] == 1:
                return path
    return None


@functools.lru_cache(maxsize=4_096)
def json_nested_path(keys: tuple[str, ...]) -> str | None:
    """The SQLite JSON path of `metadata[keys[0]][keys[1]]...`; None if none exists. Each key's
    part is `json_key_path`'s, and the joined path is tried on a probe object nested the same way
    (with look-alike keys beside each level), as `json_key_path` tries its candidates."""
    parts = [json_key_path(key) for key in keys]
    if not keys or any(part is None for part in parts):
        return None
    path = "$" + "".join(part[1:] for part in parts if part is not None)
    if len(keys) == 1:
        return path
    nested: Any = 1
    for key in reversed(keys):
        nested = {**{d: 0 for d in (key + "x", key[:-1]) if d and d != key}, key: nested}
    probe = encode_metadata(nested)
    global _probe_con
    with _probe_lock:
        if _probe_con is None:
            _probe_con = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            found = _probe_con.execute("SELECT json_extract(?, ?)", (probe, path)).fetchone()
        except sqlite3.Error:
            return None
    return path if found[0] == 1 else None


def stored_metadata(doc_id: str, text: str, metadata: dict[str, Any]) -> str:
    """A document's metadata as the JSON text stored; InvalidDocument for what SQLite cannot
    hold. The last line of defence: `Doc.coerce` refuses these first."""
    if not (storable(doc_id) and storable(text)):
        raise InvalidDocument(f"document {doc_id!r}: id and text must be valid Unicode")
    try:
        encoded = encode_metadata(metadata)
    except (ValueError, TypeError, RecursionError) as e:
        raise InvalidDocument(f"document {doc_id!r}: metadata cannot be stored: {e}") from None
    if not storable(encoded):
        raise InvalidDocument(f"document {doc_id!r}: metadata must be valid Unicode")
    return encoded
