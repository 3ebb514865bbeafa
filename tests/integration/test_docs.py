"""docs/API.md is the contract: every route the app publishes is in it, and nothing else is."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from semsearch.service.app import create_app
from semsearch.service.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "API.md"
DOCUMENTED_FOLDERS = (
    "semsearch", "cli", "encoder", "decoder", "index", "service", "evaluation",
    "docs", "bench", "tests", "examples", "scripts",
)  # fmt: skip
TOP_LEVEL_FILES = (
    "README.md", "CHANGELOG.md", "Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml",
    ".ci/run",
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
    shared, issue = "sha" + "red", "iss" + "ue"  # spelled apart so this file does not match
    notes = "(?:NO" + "TES|STY" + "LE)"
    outside = re.compile(
        rf"\.\./{shared}/|/{shared}/|{shared}/[A-Z]+\.md|\b{shared} {notes}\b|\b{notes}\.md\b"
        rf"|\b[Ii]{issue[1:]} #?\d+"
    )
    files = [root / name for name in TOP_LEVEL_FILES]
    for folder in DOCUMENTED_FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.suffix in (".py", ".md", ".txt")]
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not outside.search(line), f"{path.relative_to(root)}:{number}: {line}"


PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
IMPORT = re.compile(r"^from (semsearch[\w.]*) import (.+)$", re.M)
# Names the Python API section calls methods on, and the class each one is.
RECEIVERS = {
    "emb": "semsearch.encoder.base:SentenceEmbedder",
    "tok": "semsearch.encoder:WordPieceTokenizer",
    "WordPieceTokenizer": "semsearch.encoder:WordPieceTokenizer",
    "gen.tokenizer": "semsearch.decoder:BPETokenizer",
    "gen": "semsearch.decoder:Generator",
    "col": "semsearch.index:Collection",
    "Collection": "semsearch.index:Collection",
}
CALL = re.compile(rf"\b({'|'.join(re.escape(r) for r in RECEIVERS)})\.(\w+)\(")


def test_every_name_the_python_api_section_uses_exists():
    code = "\n".join(PYTHON_BLOCK.findall(DOCS.read_text()))
    imports = IMPORT.findall(code)
    assert imports, "no `from semsearch... import` in docs/API.md"
    for module, names in imports:
        found = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(found, name), f"docs/API.md: {module} has no {name}"
    calls = CALL.findall(code)
    assert calls, "no method calls found in docs/API.md's Python API section"
    for receiver, method in calls:
        module, name = RECEIVERS[receiver].split(":")
        cls = getattr(importlib.import_module(module), name)
        assert callable(getattr(cls, method, None)), f"{receiver}.{method}() does not exist"
