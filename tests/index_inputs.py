"""Input files for the batch indexer's tests: JSONL rows, and a small corpus with metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One row a line: a str as it is (a malformed line), anything else as JSON."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def docs(n: int) -> list[dict[str, Any]]:
    """`doc0` ... `doc{n-1}`: two of eight words and the row's number, `lang` in 0, 1, 2."""
    return [
        {"id": f"doc{i}", "text": f"{WORDS[i % 8]} {WORDS[i * 3 % 8]} number {i}", "lang": i % 3}
        for i in range(n)
    ]


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF written by hand (no PDF library involved): one page per string, each line of it
    drawn in Helvetica on a line of its own; a page of "" has no text at all. ASCII only."""

    def literal(line: str) -> str:
        return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for i, text in enumerate(pages):
        lines = text.split("\n") if text else []
        ops = "".join(
            f"BT /F1 12 Tf 72 {720 - 18 * k} Td {literal(line)} Tj ET\n"
            for k, line in enumerate(lines)
        )
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(f"<< /Length {len(ops)} >>\nstream\n{ops}endstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("ascii")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out + trailer.encode("ascii")
