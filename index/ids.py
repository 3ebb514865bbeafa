"""Document ids: the ids of the chunks the indexer cuts from long documents, and the rules a
user-given id must follow so it can never be one of them.

A chunk of document `<parent>` has the id `<parent>#chunk-<n>`. User ids may not end in
`#chunk-<digits>` (`check_user_id`), so a chunk never overwrites a user's document or the other
way round (a document `a#0` and chunk 0 of `a` are different ids). Ids are also non-empty, at
most `MAX_ID_CHARS` characters, and free of control characters (C0, DEL, C1, NUL among them):
they travel in URLs, logs and terminals.
"""

from __future__ import annotations

import re

from semsearch.index.errors import InvalidDocument, shown

MAX_ID_CHARS = 512
CHUNK_MARK = "#chunk-"
_RESERVED = re.compile(r"#chunk-[0-9]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def chunk_id(parent_id: str, n: int) -> str:
    """The id of chunk `n` of document `parent_id` (a form no user id may take)."""
    return f"{parent_id}{CHUNK_MARK}{n}"


def chunk_number(parent_id: str, doc_id: str) -> int | None:
    """n if `doc_id` is chunk n of `parent_id`, else None."""
    prefix = parent_id + CHUNK_MARK
    rest = doc_id[len(prefix) :]
    if doc_id.startswith(prefix) and rest.isascii() and rest.isdigit():
        return int(rest)
    return None


def check_user_id(doc_id: object) -> None:
    """Raise InvalidDocument unless `doc_id` is acceptable as a user's document id (see above)."""
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidDocument(f"document id must be a non-empty string, got {shown(doc_id)}")
    if len(doc_id) > MAX_ID_CHARS:
        raise InvalidDocument(
            f"document id is {len(doc_id)} characters long; at most {MAX_ID_CHARS} are allowed"
        )
    bad = _CONTROL.search(doc_id)
    if bad is not None:
        raise InvalidDocument(
            f"document id {shown(doc_id)} contains the control character {bad.group()!r}"
        )
    if _RESERVED.search(doc_id):
        raise InvalidDocument(
            f"document id {shown(doc_id)} ends in '{CHUNK_MARK}<number>', which is reserved for "
            "the chunks the indexer makes of long documents; choose another id"
        )
