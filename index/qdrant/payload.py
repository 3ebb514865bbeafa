"""A document as a Qdrant payload, laid out so that Qdrant's filters can match it exactly as the
local store's SQL does (index/filters.py).

Qdrant's conditions differ from ours in three ways, each taken care of here:

- A condition on an array matches when any element does (`{"tags": ["a"]}` matches `tags = "a"`);
  ours never see inside arrays. So filters run over `VIEW`, a copy of the metadata in which every
  array is an empty object: no match or range condition holds on an object, `ne` and `nin` do,
  and a path through it finds nothing, exactly as for an array locally. The metadata itself is
  kept as given under `METADATA`, for reading back.
- Qdrant's path syntax cannot spell every key (a key holding `.`, `"` or `[`). Keys in the view
  are written as they are when they are plain ASCII (`[A-Za-z0-9][A-Za-z0-9_]*`), else as `_`
  and the hex of their UTF-8; plain keys never begin with `_`, so no two keys share a spelling.
- Qdrant has no "key present" test: `is_empty` also holds for null and `[]`, and `is_null` also
  for an array holding null. So `PATHS` lists a token for every key path present (through
  objects, not into arrays) and another for every path whose value is null; `exists` and
  `= null` become keyword matches on it.

Numbers: Qdrant compares them as 64-bit floats, exact for integers up to 2^53 in magnitude. A
filterable integer beyond that (one not inside an array) is refused when written.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from semsearch.index.documents import Doc
from semsearch.index.errors import InvalidDocument, shown
from semsearch.index.qdrant.ids import families_of

ID, FAMILY, TEXT, METADATA, VIEW, PATHS = "id", "family", "text", "metadata", "view", "paths"
READ_BACK = [ID, TEXT, METADATA]  # what a read asks Qdrant for
KEYWORD_FIELDS = (ID, FAMILY, PATHS)  # payload indexes every collection gets
EXACT_INT = 2**53  # integers up to this magnitude are exact as 64-bit floats

_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
_SHORT_TOKEN = 64


def view_key(key: str) -> str:
    """A metadata key as written in the view (and in Qdrant paths into it)."""
    if _PLAIN_KEY.fullmatch(key):
        return key
    return "_" + key.encode("utf-8").hex()


def view_path(keys: Sequence[str]) -> str:
    """The Qdrant payload path of metadata[keys[0]][keys[1]]... in the view."""
    return ".".join([VIEW, *(view_key(k) for k in keys)])


def present_token(keys: Sequence[str]) -> str:
    """The `PATHS` entry saying that metadata[keys[0]][keys[1]]... exists: the keys as JSON
    (it begins with `[`), or a SHA-256 of it when that is long."""
    text = json.dumps(list(keys), ensure_ascii=False, separators=(",", ":"))
    if len(text) <= _SHORT_TOKEN:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def null_token(keys: Sequence[str]) -> str:
    """The `PATHS` entry saying that metadata at `keys` is null."""
    return "null:" + present_token(keys)


def _view(doc_id: str, value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        return {view_key(k): _view(doc_id, v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return {}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > EXACT_INT:
        where = "metadata" + "".join(f"[{k!r}]" for k in path)
        where = where if len(where) <= 200 else where[:199] + "…"
        raise InvalidDocument(
            f"document {shown(doc_id)}: {where} = {value} is beyond ±2^53; the Qdrant "
            "store compares numbers as 64-bit floats, which cannot hold it exactly. Store it as "
            "a string (or inside a list, where filters do not look), or use the local store"
        )
    return value


def _paths(metadata: dict[str, Any]) -> list[str]:
    tokens: list[str] = []
    stack: list[tuple[tuple[str, ...], dict[str, Any]]] = [((), metadata)]
    while stack:
        prefix, obj = stack.pop()
        for key, value in obj.items():
            keys = (*prefix, key)
            tokens.append(present_token(keys))
            if value is None:
                tokens.append(null_token(keys))
            elif isinstance(value, dict):
                stack.append((keys, value))
    return tokens


def to_payload(doc: Doc) -> dict[str, Any]:
    """The payload stored for `doc` (already checked by `Doc.coerce`); InvalidDocument for an
    integer filters could not compare exactly."""
    return {
        ID: doc.id,
        FAMILY: families_of(doc.id),
        TEXT: doc.text,
        METADATA: doc.metadata,
        VIEW: _view(doc.id, doc.metadata, ()),
        PATHS: _paths(doc.metadata),
    }


def to_doc(payload: dict[str, Any] | None) -> Doc | None:
    """The document a point's payload holds; None for a point that is not a document."""
    if not payload or not isinstance(payload.get(ID), str):
        return None
    return Doc(payload[ID], payload.get(TEXT, ""), payload.get(METADATA) or {})
