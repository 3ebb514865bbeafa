"""Files of a collection directory: manifest.json, the FAISS snapshot, the writer lock.

Every file is replaced atomically (write a temp file, fsync, rename, fsync the directory), so a
crash leaves either the old or the new version, never half of one (txtai `embeddings/base.py`
save). The snapshot carries a checksum: a truncated or bit-flipped file is detected and rebuilt
from SQLite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import FormatError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SNAPSHOT = "vectors.snapshot"
DATABASE = "docs.sqlite"
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


def recover_swap(new: Path, target: Path) -> None:
    """Finish a `swap_directories` that a crash cut short between its two renames."""
    olds = list(target.parent.glob(f".{target.name}.old-*"))
    if not target.exists() and new.exists() and olds:
        os.replace(new, target)  # `new` was complete: the swap starts only after it is built
        fsync_dir(target.parent)
    if target.exists():
        for old in olds:
            shutil.rmtree(old)


def swap_directories(new: Path, target: Path) -> None:
    """Put `new` in place of `target` (e.g. after a re-embedding), then delete the old one."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)
