"""A Qdrant collection's reads that fetch documents without a query vector: by id, a filtered
count, a page of documents, every stored id, a document's stored forms. Mixed into
`QdrantCollection`.

Pages come in the order of the point ids (uuid5 of the document ids), not of the ids' bytes as
on the local store: Qdrant orders by point id or by a numeric payload field only, and no number
can keep the order of every string. The cursor is still the last id of a page, and a document
stored throughout is returned exactly once whatever is written between pages: its point id never
changes, and each page starts after the previous page's last point id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from qdrant_client import models

from semsearch.index.documents import Doc
from semsearch.index.ids import chunk_number
from semsearch.index.json_paths import storable
from semsearch.index.qdrant import payload as layout
from semsearch.index.qdrant.filters import Condition, family_in, to_qdrant, without_settings
from semsearch.index.qdrant.ids import point_id
from semsearch.index.qdrant.opening import Opened

T = TypeVar("T")
PAGE = 1_024  # points per scroll, retrieve or delete request


def pages(items: Sequence[T], size: int = PAGE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def usable_ids(ids: Iterable[Any]) -> list[str]:
    """The distinct ids that could be stored (strings with a UTF-8 form), in order."""
    return [i for i in dict.fromkeys(ids) if isinstance(i, str) and storable(i)]


class Listing(Opened):
    def _where(self, flt: dict[str, Any] | None) -> models.Filter:
        """`flt` as a Qdrant filter that also leaves the settings point out."""
        return without_settings(to_qdrant(flt, self.limits.max_filter_conditions))

    def _scan(self, flt: models.Filter, with_payload: Any, page: int = PAGE) -> Iterator[list[Any]]:
        """Every point matching `flt`, a page of records at a time, in point id order."""
        offset = None
        while True:
            found, offset = self._q(
                "scroll", scroll_filter=flt, limit=page, offset=offset, with_payload=with_payload
            )
            if found:
                yield found
            if offset is None:
                return

    def _point_ids(self, condition: Condition) -> list[str]:
        return [str(r.id) for page in self._scan(without_settings(condition), False) for r in page]

    def _retrieve(self, ids: list[str], with_payload: Any) -> list[Any]:
        """The records of those of these document ids that are stored (a point whose payload
        names another id would be a uuid5 collision, and is left out)."""
        out = []
        for part in pages(ids):
            wanted = {point_id(i): i for i in part}
            found = self._q(
                "retrieve",
                ids=list(wanted),
                with_payload=list(dict.fromkeys([layout.ID, *with_payload])),
            )
            out += [r for r in found if (r.payload or {}).get(layout.ID) == wanted.get(str(r.id))]
        return out

    def get(self, doc_id: str) -> Doc | None:
        if not usable_ids([doc_id]) or not self._ready():
            return None
        found = self._retrieve([doc_id], layout.READ_BACK)
        return layout.to_doc(found[0].payload) if found else None

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        wanted = usable_ids(ids)
        if not wanted or not self._ready():
            return set()
        return {r.payload[layout.ID] for r in self._retrieve(wanted, [])}

    def count(self, filter: dict[str, Any] | None = None) -> int:
        """Documents in the collection, or those matching `filter`."""
        flt = self._where(filter)
        return int(self._q("count", count_filter=flt, exact=True).count) if self._ready() else 0

    def scroll(
        self, after: str = "", limit: int = 100, filter: dict[str, Any] | None = None
    ) -> list[Doc]:
        """A page of documents in point id order (see the module docstring): up to `limit`
        after the document `after` ("" for the first page) that match `filter`. Pass the last
        id of a page to get the next: every document stored throughout is returned exactly
        once, whatever is written meanwhile."""
        flt = self._where(filter)
        if limit < 1 or not isinstance(after, str) or not storable(after) or not self._ready():
            return []
        # Qdrant's offset is inclusive: the cursor's own point (if still stored) is skipped.
        cursor = point_id(after) if after else None
        found, _ = self._q(
            "scroll",
            scroll_filter=flt,
            limit=limit + 1 if cursor else limit,
            offset=cursor,
            with_payload=layout.READ_BACK,
        )
        docs = [layout.to_doc(r.payload) for r in found if str(r.id) != cursor]
        return [d for d in docs if d is not None][:limit]

    def families(self, parents: Sequence[str]) -> dict[str, Doc]:
        """Every stored form of these documents (each id itself, its chunks), by id."""
        wanted = usable_ids(parents)
        out: dict[str, Doc] = {}
        if not wanted or not self._ready():
            return out
        for part in pages(wanted):
            for page in self._scan(without_settings(family_in(part)), layout.READ_BACK):
                out.update((d.id, d) for r in page if (d := layout.to_doc(r.payload)))
        return out

    def chunks_of(self, parent: str) -> list[Doc]:
        """The chunks stored for document `parent`, in order (none: it is stored whole, or not)."""
        numbered = [(chunk_number(parent, i), d) for i, d in self.families([parent]).items()]
        return [d for n, d in sorted(numbered, key=lambda x: x[0] or 0) if n is not None]

    def iter_ids(self, chunk: int = 4_096) -> Iterable[list[str]]:
        """Every stored id, a page at a time (in point id order)."""
        for page in self._iter_pages(chunk, [layout.ID]):
            yield [r.payload[layout.ID] for r in page]

    def iter_docs(self, chunk: int = 1_024) -> Iterable[list[Doc]]:
        for page in self._iter_pages(chunk, layout.READ_BACK):
            yield [d for r in page if (d := layout.to_doc(r.payload)) is not None]

    def _iter_pages(self, chunk: int, with_payload: Any) -> Iterator[list[Any]]:
        if self._ready():
            yield from self._scan(self._where(None), with_payload, chunk)
