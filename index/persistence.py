"""Files of a collection directory: manifest.json, the FAISS snapshot; swapping in a reindexed copy.

Every file is replaced atomically (write a temp file, fsync, rename, fsync the directory), so a
crash leaves either the old or the new version, never half of one (txtai `embeddings/base.py`
save). The snapshot carries a checksum: a truncated or bit-flipped file is detected and rebuilt
from SQLite.

A reindex builds a complete copy in `<dir>.reindex`, writes `swap.complete` into it, then
`swap_directories` renames `<dir>` to `.<dir>.old-*`, the copy to `<dir>`, deletes the old copy
and last the marker. A crash can stop it anywhere; `recover_swap` (run by every writable open
before anything creates a collection) finishes or undoes it from what it finds:

- no `<dir>`, a marked copy: the crash fell between the renames; the copy goes in place.
- `<dir>` marked complete beside old copies: the swap was done; the old copies go.
- no `<dir>`, no marked copy, exactly one old copy that is a collection: it goes back in place.
- anything else with an old copy (an unmarked `<dir>` beside one, several candidates): refused,
  never guessed; nothing is deleted.

So an old copy is deleted only once the directory in its place is known to be complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semsearch.index.errors import FormatError
from semsearch.index.locking import swap_lock, swap_settled

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SNAPSHOT = "vectors.snapshot"
DATABASE = "docs.sqlite"
SWAP_MARKER = "swap.complete"  # in a reindexed copy: it is complete and may replace the original
_MAGIC = b"SEMSIDX\x00"
_HEADER = struct.Struct("<8sI")  # magic, header-JSON length


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes the rename itself durable
    finally:
        os.close(fd)


@dataclass
class Manifest:
    dim: int | None = None
    metric: str = "cosine"
    index: dict[str, Any] = field(default_factory=dict)  # IndexConfig.to_dict()
    encoder_fingerprint: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode() + b"\n"


def read_manifest(directory: Path) -> Manifest | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(
            f"{path} is unreadable ({exc}); restore it or rebuild the collection"
        ) from exc
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{path} has format version {version!r}; this semsearch reads {FORMAT_VERSION}. "
            "Rebuild the collection with `semsearch index build`."
        )
    return Manifest(**{k: v for k, v in data.items() if k in Manifest.__dataclass_fields__})


def write_manifest(directory: Path, manifest: Manifest) -> None:
    atomic_write(directory / MANIFEST, manifest.to_json())


def write_snapshot(path: Path, header: dict[str, Any], payload: bytes | memoryview) -> None:
    """One file: magic, JSON header (format version, seq, checksum...), then the payload bytes."""
    header = {
        **header,
        "format_version": FORMAT_VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    head = json.dumps(header, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(_MAGIC, len(head)))
        f.write(head)
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_snapshot(path: Path) -> tuple[dict[str, Any], bytes] | None:
    """`(header, payload)`; None when missing, truncated, corrupt or of another version."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, head_len = _HEADER.unpack_from(raw)
    if magic != _MAGIC or _HEADER.size + head_len > len(raw):
        return None
    try:
        header = json.loads(raw[_HEADER.size : _HEADER.size + head_len])
    except ValueError:
        return None
    payload = raw[_HEADER.size + head_len :]
    if header.get("format_version") != FORMAT_VERSION:
        return None
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        return None
    return header, payload


def remove_stale_temps(directory: Path) -> None:
    """Temp files left by a writer killed mid-write (call with the writer lock held)."""
    for path in directory.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def bytes_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def reindex_dir(target: Path) -> Path:
    """Where a reindex builds the copy that replaces `target`."""
    return target.with_name(f"{target.name}.reindex")


def old_copies(target: Path) -> list[Path]:
    """`.<name>.old-*` beside `target`: originals a swap moved aside (not deleted yet)."""
    prefix = f".{target.name}.old-"
    try:
        return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def mark_complete(directory: Path, info: dict[str, Any]) -> None:
    """Record that `directory` holds a complete copy (durably, before any swap rename)."""
    atomic_write(directory / SWAP_MARKER, json.dumps(info, sort_keys=True).encode() + b"\n")


def is_complete(directory: Path) -> bool:
    return (directory / SWAP_MARKER).is_file()


def swap_pending(target: Path) -> bool:
    """Does `target` show a swap that a crash interrupted (see the module docstring)?"""
    if old_copies(target) or is_complete(target):
        return True
    return not target.exists() and reindex_dir(target).exists()


def recover_swap(target: Path, timeout_s: float | None = None, read_only: bool = False) -> None:
    """Finish or undo a `swap_directories` a crash cut short; never loses either copy's data.

    Read-only callers change nothing: a finished swap is simply usable, an unfinished one is
    refused (FormatError) until a writable open recovers it."""
    if not swap_pending(target):
        return
    if read_only:
        with swap_settled(target, timeout_s):  # a live swap (not a crashed one) ends first
            if not swap_pending(target) or (target.exists() and is_complete(target)):
                return  # nothing interrupted, or only the cleanup is left of it
        raise FormatError(
            f"{target} is in the middle of an interrupted reindex swap; open it writable once "
            "(e.g. `semsearch index build` or start the server) to finish it"
        )
    with swap_lock(target, timeout_s):  # a live swap finishes first; then look again
        new, olds = reindex_dir(target), old_copies(target)
        if not target.exists():
            if new.exists() and is_complete(new):
                os.replace(new, target)
                fsync_dir(target.parent)
                log.warning("finished an interrupted reindex swap: %s is the new copy", target)
            else:
                _roll_back(target, olds)
                return
        if is_complete(target):
            _drop_old_copies(target)
        elif old_copies(target):
            raise FormatError(
                f"{target} sits beside old copies {[str(p) for p in old_copies(target)]} but is "
                "not marked as a complete reindexed copy; refusing to guess which one holds the "
                "data. Keep the right one as the collection directory and delete the others."
            )


def _roll_back(target: Path, olds: list[Path]) -> None:
    """No complete copy to roll forward to: put the one original back (renames only)."""
    candidates = [p for p in olds if (p / MANIFEST).is_file()]
    if not olds:
        raise FormatError(
            f"{target} is missing and {reindex_dir(target)} is an unfinished reindex copy of it; "
            "move the collection back into place, or delete that copy to start a new one"
        )
    if len(candidates) != 1:
        raise FormatError(
            f"{target} is missing after an interrupted reindex swap and no single copy can "
            f"replace it (old copies: {[str(p) for p in olds]}; {reindex_dir(target)} is not "
            "marked complete). Move the right copy to the collection directory by hand."
        )
    os.replace(candidates[0], target)
    fsync_dir(target.parent)
    log.warning("undid an interrupted reindex swap: %s is the original again", target)


def _drop_old_copies(target: Path) -> None:
    """`target` is complete: delete what it replaced, then (last) its marker."""
    for old in old_copies(target):
        shutil.rmtree(old)
    (target / SWAP_MARKER).unlink(missing_ok=True)
    fsync_dir(target)


def swap_directories(new: Path, target: Path, timeout_s: float | None = None) -> None:
    """Put `new` (marked complete by `mark_complete`) in place of `target`, then delete the old."""
    if not is_complete(new):
        raise FormatError(f"{new} is not marked complete; refusing to swap it in for {target}")
    with swap_lock(target, timeout_s):
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if target.exists():
            os.replace(target, old)
            fsync_dir(target.parent)
        os.replace(new, target)
        fsync_dir(target.parent)
        _drop_old_copies(target)
