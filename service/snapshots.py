"""A collection's snapshots through HTTP: `index/backup.py` copies, kept under
SEMSEARCH_SNAPSHOTS_DIR/<collection>/<snapshot name>/ and restored with `semsearch index restore`.

Each snapshot is a full copy, so their number per collection is bounded
(SEMSEARCH_MAX_SNAPSHOTS): past it, taking one more is refused until an old one is deleted, rather
than deleting anyone's backup behind their back. Snapshot names are made here
(`<collection>-<UTC time>-<random>`) and checked against that form before they touch a path.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from semsearch.index.backup import backed_up_documents, backup
from semsearch.service.collections import check_name
from semsearch.service.errors import Conflict, NotFound, ValidationFailed
from semsearch.service.settings import Settings

log = logging.getLogger(__name__)

_SNAPSHOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


@dataclass(frozen=True)
class Snapshot:
    name: str
    created: str  # UTC, ISO 8601
    documents: int
    bytes: int


class Snapshots:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.snapshots_root()
        self.limit = settings.max_snapshots

    def _folder(self, collection: str) -> Path:
        return self.root / check_name(collection)

    def take(self, collection: str, directory: Path) -> Snapshot:
        """Copy the collection in `directory` (consistent while it is written to)."""
        folder = self._folder(collection)
        if len(self.list(collection)) >= self.limit:
            raise Conflict(
                f"collection {collection!r} has {self.limit} snapshots, the most kept "
                "(SEMSEARCH_MAX_SNAPSHOTS); delete one first"
            )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{collection}-{stamp}-{secrets.token_hex(4)}"
        report = backup(directory, folder / name)
        log.info("snapshot %s: %d documents, %d bytes", name, report.documents, report.bytes)
        return self._describe(folder / name, report.documents)

    def list(self, collection: str) -> list[Snapshot]:
        folder = self._folder(collection)
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if _SNAPSHOT.fullmatch(p.name) and p.is_dir()]
        return [self._describe(p) for p in sorted(found)]

    def delete(self, collection: str, name: str) -> None:
        if not _SNAPSHOT.fullmatch(name):
            raise ValidationFailed(f"{name[:120]!r} is not a snapshot name", param="name")
        path = self._folder(collection) / name
        if not path.is_dir():
            raise NotFound(f"no snapshot {name!r} of collection {collection!r}")
        shutil.rmtree(path)

    @staticmethod
    def _describe(path: Path, documents: int | None = None) -> Snapshot:
        if documents is None:
            documents = backed_up_documents(path)
        stamp = path.name.rsplit("-", 2)[1]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        return Snapshot(path.name, created, documents, size)
