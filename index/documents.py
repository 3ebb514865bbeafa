"""Documents going in and hits coming out of a collection."""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from semsearch.index.errors import InvalidDocument, shown
from semsearch.index.limits import Limits

if TYPE_CHECKING:
    from semsearch.index.fusion import Found

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite (and its JSON functions) hold exactly


def _where(path: tuple[str | int, ...]) -> str:
    where = "metadata" + "".join(f"[{p!r}]" for p in path)
    return where if len(where) <= 200 else where[:199] + "…"


def _valid_unicode(text: str) -> bool:
    """False for a lone surrogate (JSON's "\\ud800" decodes to one): it has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_string(doc_id: str, path: tuple[str | int, ...], text: str, what: str) -> None:
    if not _valid_unicode(text):
        raise InvalidDocument(
            f"document {shown(doc_id)}: {what} {_where(path)} is not valid Unicode"
        )


def check_metadata(doc_id: str, metadata: dict[str, Any], limits: Limits) -> None:
    """InvalidDocument, naming the offending key path, unless `metadata` is JSON that SQLite can
    store and filters can compare exactly.

    Refused: keys that are not strings; floats that are NaN or infinite (`json.dumps` writes
    them as invalid JSON, which would make every filtered search fail); integers outside signed
    64 bits (SQLite turns them into inexact floats); strings holding NUL (SQLite's JSON functions
    before 3.45 cut a string there, so a filter would compare a prefix); lone surrogates; nesting
    deeper than `limits.max_metadata_depth`; compact JSON over `limits.max_metadata_bytes`. The
    walk is iterative (no RecursionError at any depth) and stops as soon as a lower bound of the
    size passes the limit (a huge or self-sharing structure costs no more than the limit).
    """
    budget = limits.max_metadata_bytes  # lower bound of the compact JSON size still allowed
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(metadata, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth > limits.max_metadata_depth:
                raise InvalidDocument(
                    f"document {shown(doc_id)}: {_where(path)} nests deeper than "
                    f"{limits.max_metadata_depth} levels (SEMSEARCH_MAX_METADATA_DEPTH)"
                )
            budget -= 2 + max(len(value) - 1, 0)  # brackets and commas
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise InvalidDocument(
                            f"document {shown(doc_id)}: metadata keys must be strings; "
                            f"{_where(path)} has the key {shown(key)}"
                        )
                    _check_string(doc_id, (*path, key), key, "the key of")
                    budget -= len(key) + 3  # "key":
                    stack.append((item, (*path, key), depth + 1))
            else:
                stack.extend((item, (*path, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_string(doc_id, path, value, "the string at")
            if "\x00" in value:
                raise InvalidDocument(
                    f"document {shown(doc_id)}: {_where(path)} contains a NUL character, which "
                    "SQLite's JSON functions cannot compare"
                )
            budget -= len(value) + 2
        elif value is None or isinstance(value, bool):
            budget -= 4
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidDocument(
                    f"document {shown(doc_id)}: {_where(path)} = {value} is outside the signed "
                    "64-bit range that SQLite stores exactly"
                )
            budget -= 1
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidDocument(
                    f"document {shown(doc_id)}: {_where(path)} is {shown(value)}; "
                    "NaN and infinity are not JSON"
                )
            budget -= 1
        else:
            raise InvalidDocument(
                f"document {shown(doc_id)}: {_where(path)} is a {type(value).__name__}; metadata "
                "values must be JSON (objects, lists, strings, numbers, booleans, null)"
            )
        if budget < 0:
            break
    try:
        too_big = budget < 0 or limits.max_metadata_bytes < len(
            json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
    except RecursionError:  # only with a max_metadata_depth past Python's recursion limit
        too_big = True
    if too_big:
        raise InvalidDocument(
            f"document {shown(doc_id)}: metadata is larger than {limits.max_metadata_bytes} bytes "
            "of JSON (SEMSEARCH_MAX_METADATA_BYTES)"
        )


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, obj: Doc | dict[str, Any], limits: Limits | None = None) -> Doc:
        """A checked `Doc` from a Doc or a `{"id", "text", "metadata"}` dict; a missing id gets
        a uuid4. Docs built in Python are checked too: they reach the same store."""
        if isinstance(obj, Doc):
            doc_id, text, metadata = obj.id, obj.text, obj.metadata
        elif isinstance(obj, dict):
            doc_id, text, metadata = obj.get("id"), obj.get("text"), obj.get("metadata")
        else:
            raise InvalidDocument(f"a document must be a dict or Doc, got {type(obj).__name__}")
        if doc_id is None:
            doc_id = uuid.uuid4().hex
        if not isinstance(doc_id, str) or not doc_id or not _valid_unicode(doc_id):
            raise InvalidDocument(f"document id must be a non-empty string, got {shown(doc_id)}")
        if not isinstance(text, str):
            raise InvalidDocument(
                f"document {shown(doc_id)}: 'text' must be a string, got {shown(text)}"
            )
        if not _valid_unicode(text):
            raise InvalidDocument(f"document {shown(doc_id)}: 'text' is not valid Unicode")
        metadata = metadata or {}
        if not isinstance(metadata, dict):
            raise InvalidDocument(
                f"document {shown(doc_id)}: 'metadata' must be an object, "
                f"got {type(metadata).__name__}"
            )
        check_metadata(doc_id, metadata, limits or Limits())
        if isinstance(obj, Doc) and obj.id is doc_id and obj.metadata is metadata:
            return obj
        return cls(doc_id, text, metadata)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    # dense: cosine similarity (vectors are L2-normalized, metric is inner product); keyword:
    # BM25; hybrid: the reciprocal-rank fusion score (index/fusion.py)
    score: float
    text: str
    metadata: dict[str, Any]
    # keyword and hybrid searches: where each side ranked this hit ("dense", "keyword")
    found_by: dict[str, Found] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "score": self.score, "text": self.text, "metadata": self.metadata}
        if self.found_by is not None:
            out["found_by"] = {side: found.to_dict() for side, found in self.found_by.items()}
        return out
