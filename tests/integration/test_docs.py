"""docs/API.md is the contract: every route the app publishes is in it, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from semsearch.service.app import create_app
from semsearch.service.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "API.md"
DOCUMENTED_FOLDERS = (
    "semsearch", "cli", "encoder", "decoder", "index", "service", "evaluation",
    "docs", "bench", "tests", "examples",
)  # fmt: skip
ROUTE = re.compile(r"`(GET|POST|DELETE|HEAD) (/[^`\s]*)`")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)  # `{id}` in the docs is `{doc_id}` in the code


def test_every_published_route_is_documented_and_every_documented_route_exists():
    paths = create_app(Settings(decoder="off")).openapi()["paths"]
    published = {(m.upper(), _shape(p)) for p, methods in paths.items() for m in methods}
    documented = {(m, _shape(p)) for m, p in ROUTE.findall(DOCS.read_text())}
    assert published - documented == set(), "published but not in docs/API.md"
    assert documented - published == set(), "in docs/API.md but not published"


def test_no_text_in_the_repo_points_outside_it():
    """A user who clones the repo has no planning folder and no issue tracker of ours."""
    root = DOCS.parents[1]
    shared, issue = "sha" + "red/", "iss" + "ue"  # spelled apart so this file does not match
    outside = re.compile(rf"\.\./{shared}|/{shared}|{shared}[A-Z]+\.md|\b[Ii]{issue[1:]} #?\d+")
    files = [root / name for name in ("README.md", "CHANGELOG.md", "Makefile", "Dockerfile")]
    for folder in DOCUMENTED_FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.suffix in (".py", ".md", ".txt")]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not outside.search(line), f"{path.relative_to(root)}:{number}: {line}"
