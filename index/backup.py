"""Backing a collection up while a server writes to it, and restoring it (beside index/store.py,
the one other file that opens SQLite: it copies the store's file as a whole).

A backup directory holds the same three files as a collection: the vector snapshot, the SQLite
store and the manifest. They are copied in that order, the store through SQLite's online backup,
which reads one consistent state (a WAL read transaction: writers go on). The copied snapshot is
then never newer than the copied store, which is the state `Collection.open` expects: it replays
the store's later writes into the snapshot, or rebuilds the index from the store when the writes
it would need were pruned meanwhile. The store is the source of truth either way.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from semsearch.index.errors import InvalidArgument
from semsearch.index.persistence import DATABASE, MANIFEST, SNAPSHOT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupReport:
    directory: Path
    documents: int
    bytes: int


def _empty_target(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidArgument(f"{what} {path} exists and is not an empty directory")


def _copy_store(source: Path, dest: Path) -> int:
    """SQLite's online backup of `source` into the new file `dest`; the documents it holds."""
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)  # one step: one read transaction, so one consistent state
        check = dst.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise OSError(f"the copy of {source} failed SQLite's check: {check}")
        return int(dst.execute("SELECT count(*) FROM docs").fetchone()[0])
    finally:
        dst.close()
        src.close()


def _copy_collection(source: Path, dest: Path) -> int:
    """Snapshot, store, manifest, in that order, from `source` into the directory `dest`."""
    if not (source / MANIFEST).is_file() or not (source / DATABASE).is_file():
        raise InvalidArgument(f"{source} is not a collection (no {MANIFEST} and {DATABASE})")
    dest.mkdir(parents=True, exist_ok=True)
    if (source / SNAPSHOT).is_file():
        try:
            shutil.copyfile(source / SNAPSHOT, dest / SNAPSHOT)
        except FileNotFoundError:
            pass  # replaced mid-copy by a rebuild: the store alone rebuilds the index
    documents = _copy_store(source / DATABASE, dest / DATABASE)
    shutil.copyfile(source / MANIFEST, dest / MANIFEST)
    for name in (SNAPSHOT, DATABASE, MANIFEST):
        if (dest / name).exists():
            with open(dest / name, "rb+") as f:
                os.fsync(f.fileno())
    return documents


def backed_up_documents(backup_dir: Path) -> int:
    """How many documents the backup in `backup_dir` holds."""
    con = sqlite3.connect(f"{(backup_dir / DATABASE).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM docs").fetchone()[0])
    finally:
        con.close()


def backup(collection_dir: Path, dest: Path) -> BackupReport:
    """Copy the collection in `collection_dir` into the new (or empty) directory `dest`,
    consistently while other processes write to it."""
    _empty_target(dest, "backup directory")
    documents = _copy_collection(collection_dir, dest)
    size = sum(f.stat().st_size for f in dest.iterdir())
    log.info("backed up %d documents from %s to %s", documents, collection_dir, dest)
    return BackupReport(dest, documents, size)


def restore(backup_dir: Path, collection_dir: Path) -> BackupReport:
    """Make `collection_dir` (new or empty: a live collection is never overwritten) a copy of
    the backup in `backup_dir`. Copied beside the target, then renamed into place, so an
    interrupted restore leaves no half collection behind."""
    _empty_target(collection_dir, "collection directory")
    staging = collection_dir.with_name(f".{collection_dir.name}.restoring")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        documents = _copy_collection(backup_dir, staging)
        if collection_dir.exists():
            collection_dir.rmdir()  # empty, checked above
        staging.rename(collection_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(f.stat().st_size for f in collection_dir.iterdir())
    log.info("restored %d documents from %s into %s", documents, backup_dir, collection_dir)
    return BackupReport(collection_dir, documents, size)
