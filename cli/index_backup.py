"""`semsearch index backup DIR` and `semsearch index restore DIR`: a collection's files copied
consistently while a server writes to it, and put back."""

from __future__ import annotations

import argparse

from semsearch.cli.arguments import add_index_dir_flag, index_dir


def add_parsers(sub: argparse._SubParsersAction) -> None:
    what = "copy the collection into a new directory, consistently while a server writes to it"
    b = sub.add_parser("backup", help=what, description=what)
    b.add_argument("dest", metavar="DIR", help="the backup's directory: new or empty")
    add_index_dir_flag(b)
    b.add_argument(
        "--quiet", action="store_true", help="print nothing on success (default: a line)"
    )
    b.set_defaults(run=run_backup, prog=b.prog)

    what = (
        "make --index-dir a copy of a backup; the directory must be new or empty (a live "
        "collection is never overwritten)"
    )
    r = sub.add_parser("restore", help=what, description=what)
    r.add_argument("source", metavar="DIR", help="a directory written by `semsearch index backup`")
    add_index_dir_flag(r)
    r.add_argument(
        "--quiet", action="store_true", help="print nothing on success (default: a line)"
    )
    r.set_defaults(run=run_restore, prog=r.prog)


def run_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semsearch.index.backup import backup

    report = backup(index_dir(args), Path(args.dest))
    if not args.quiet:
        print(
            f"backed up {report.documents} documents ({report.bytes} bytes) to {report.directory}"
        )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from semsearch.index.backup import restore

    report = restore(Path(args.source), index_dir(args))
    if not args.quiet:
        print(f"restored {report.documents} documents into {report.directory}")
    return 0
