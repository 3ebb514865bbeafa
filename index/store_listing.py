"""The store's reads that list and count: a filtered count, a page of documents in id order,
every stored id, and a document's stored forms (itself, its chunks). Mixed into `Store`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from semsearch.index.documents import Doc
from semsearch.index.json_paths import storable


class Listing:
    """Needs the store's connection, query deadline and vid lookups."""

    def _con(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _deadline(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def docs_by_vids(self, vids: Sequence[int]) -> dict[int, Doc]:
        raise NotImplementedError

    @staticmethod
    def _family_vids(con: sqlite3.Connection, parents: Sequence[str]) -> dict[str, int]:
        raise NotImplementedError

    def count_where(self, where: str, params: Sequence[Any]) -> int:
        """Live documents matching an SQL condition built by index/filters.py."""
        with self._deadline() as con:
            row = con.execute(f"SELECT count(*) FROM docs WHERE {where}", params).fetchone()
        return int(row[0])

    def scroll(self, after: str, limit: int, where: str, params: Sequence[Any]) -> list[Doc]:
        """Up to `limit` live documents with an id after `after` ("" for the first page) that
        match the condition, in id order (SQLite's binary order of the UTF-8 ids): a cursor that
        is the last id seen resumes exactly there, whatever was written in between."""
        if not storable(after):
            return []
        sql = (
            "SELECT d.id, t.text, d.metadata FROM docs d JOIN texts t USING (vid) "
            f"WHERE d.id > ? AND {where} ORDER BY d.id LIMIT ?"
        )
        with self._deadline() as con:
            rows = con.execute(sql, (after, *params, limit)).fetchall()
        return [Doc(r[0], r[1], json.loads(r[2])) for r in rows]

    def families(self, parents: Sequence[str]) -> dict[str, Doc]:
        """Every stored form of these documents (each id, its chunks), by id."""
        con = self._con()
        vids = self._family_vids(con, [p for p in dict.fromkeys(parents) if storable(p)])
        return {d.id: d for d in self.docs_by_vids(list(vids.values())).values()}

    def iter_ids(self, chunk: int = 4_096) -> Iterator[list[str]]:
        """Every stored id, in id order, a page at a time."""
        last = ""
        while True:
            rows = self._con().execute(
                "SELECT id FROM docs WHERE id > ? ORDER BY id LIMIT ?", (last, chunk)
            )
            ids = [r[0] for r in rows]
            if not ids:
                return
            last = ids[-1]
            yield ids
