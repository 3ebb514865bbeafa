"""The `semsearch` console script, run as a user runs it: in a subprocess.

Also keeps docs/API.md's command-line section and the parser equal (every command and flag in
both), and every flag's help naming its default and the SEMSEARCH_* variable it overrides.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from serving import REPO, free_port, running_server

from semsearch.cli.arguments import env_name
from semsearch.cli.main import build_parser
from semsearch.encoder.onnx.auto import read_choice
from semsearch.encoder.onnx.embedder import default_artifact_dir
from semsearch.service.settings import Settings

SEMSEARCH = [sys.executable, "-m", "semsearch"]
DOCS = REPO / "docs" / "API.md"


def auto_pick() -> str:
    """What the default backend, auto, serves: the fastest artifact the export measured here."""
    return read_choice(default_artifact_dir())["ranking"][0]


def run_cli(
    *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEMSEARCH, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command that runs a job, as ("index build", its parser)."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers and path:
        yield " ".join(path), parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from commands(sub, (*path, name))


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if a.option_strings and not isinstance(a, skip)]


# --- the jobs ------------------------------------------------------------------------------------


def test_embed_command_writes_rows_in_input_order(tmp_path, real_embedder):
    texts = ["first line", "a second, longer line of text", "", "ünïcödé"]
    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)))

    expected = real_embedder.encode(texts)
    for source in (plain, jsonl):
        out = tmp_path / f"{source.stem}-{source.suffix[1:]}.npy"
        result = run_cli(
            "embed", "--input", str(source), "--output", str(out), "--quiet", "--backend", "torch"
        )
        assert result.returncode == 0, result.stderr
        got = np.load(out)
        assert got.dtype == np.float32 and got.shape == (len(texts), 384)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_embed_command_reports_bad_jsonl_with_its_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json}\n')
    result = run_cli("embed", "--input", str(bad), "--output", str(tmp_path / "x.npy"))
    assert result.returncode == 1
    assert "semsearch embed: error: " in result.stderr and "bad.jsonl:2" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_build_info_and_search_on_the_real_encoder(tmp_path):
    source = tmp_path / "docs.jsonl"
    rows = [
        {"id": "fox", "text": "The quick brown fox jumps over the lazy dog.", "lang": "en"},
        {"id": "cat", "text": "Die Katze schläft auf dem Sofa.", "lang": "de"},
        {"id": "vec", "text": "Vector search finds documents by meaning.", "lang": "en"},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    env = {"SEMSEARCH_INDEX_DIR": str(tmp_path / "index")}  # no --index-dir: the variable counts

    built = run_cli("index", "build", str(source), "--quiet", env=env)
    assert built.returncode == 0, built.stderr
    assert "3 added" in built.stdout and "1 bad rows" in built.stdout
    assert "docs.jsonl:4" in built.stderr

    info = run_cli("index", "info", "--json", env=env)
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["count"] == 3 and details["dim"] == 384
    assert details["encoder_fingerprint"]["backend"] == auto_pick()  # the default backend, auto

    query = ["search", "a dog and a fox", "-k", "2", "--json"]
    found = run_cli(*query, "--filter", '{"lang": "en"}', env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert [h["id"] for h in hits] == ["fox", "vec"]
    assert set(hits[0]) == {"id", "score", "text", "metadata"}

    bad_filter = run_cli(*query, "--filter", '{"lang": {"near": 1}}', env=env)
    assert bad_filter.returncode == 2, bad_filter.stderr
    keyword = run_cli("search", "Katze", "--mode", "keyword", "--json", env=env)
    assert [h["id"] for h in json.loads(keyword.stdout)["hits"]] == ["cat"], keyword.stderr

    saved = run_cli("index", "backup", str(tmp_path / "backup"), env=env)
    assert saved.returncode == 0 and "backed up 3 documents" in saved.stdout, saved.stderr
    again = run_cli("index", "backup", str(tmp_path / "backup"), env=env)  # not empty: refused
    assert again.returncode == 2 and "not an empty directory" in again.stderr
    restored_env = {"SEMSEARCH_INDEX_DIR": str(tmp_path / "restored")}
    back = run_cli("index", "restore", str(tmp_path / "backup"), "--quiet", env=restored_env)
    assert back.returncode == 0 and back.stdout == "", back.stderr
    again = run_cli(*query, "--filter", '{"lang": "en"}', env=restored_env)
    assert json.loads(again.stdout)["hits"] == hits
    assert "semsearch search: error: " in bad_filter.stderr and "near" in bad_filter.stderr

    other_encoder = run_cli(*query, "--backend", "onnx", env=env)
    assert other_encoder.returncode == 1
    assert "built with another encoder" in other_encoder.stderr
    assert "Traceback" not in other_encoder.stderr


def test_verify_passes_on_the_real_model():
    result = run_cli("verify", "--texts", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tokenizer ids vs transformers fast tokenizer" in result.stdout
    assert "encoder [torch] vs sentence-transformers" in result.stdout
    assert "FAIL" not in result.stdout


def test_serve_answers_health_and_embed(tmp_path):
    port = free_port()
    env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(tmp_path / "index")}
    log = tmp_path / "server.log"
    with running_server([*SEMSEARCH, "serve", "--port", str(port)], port, env, log=log) as base:
        response = httpx.post(f"{base}/embed", json={"inputs": ["hello", "world"]}, timeout=30)
        assert response.status_code == 200
        vectors = np.asarray(response.json())
        assert vectors.shape == (2, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert httpx.get(f"{base}/info", timeout=10).json()["encoder"]["backend"] == auto_pick()
    # Text logs (the default): one readable access line per request, uvicorn's own is off.
    lines = log.read_text().splitlines()
    embeds = [line for line in lines if "POST /embed" in line]
    assert len(embeds) == 1, lines
    assert " INFO semsearch.access: POST /embed 200 " in embeds[0]
    assert "batch_size=2" in embeds[0] and "tokens=" in embeds[0]


def test_serve_json_logs_are_one_object_per_line(tmp_path):
    port = free_port()
    env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(tmp_path / "index"), "SEMSEARCH_DECODER": "off"}
    command = [*SEMSEARCH, "serve", "--port", str(port), "--log-format", "json"]
    log = tmp_path / "server.log"
    with running_server(command, port, env, log=log) as base:
        mine = {"x-request-id": "deploy-42"}
        response = httpx.post(f"{base}/embed", json={"inputs": ["a", "b", "c"]}, headers=mine)
        assert response.status_code == 200
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is JSON
    loggers = {line["logger"] for line in lines}
    assert "uvicorn.error" in loggers and "semsearch.service.models" in loggers  # one format
    assert "uvicorn.access" not in loggers
    access = [line for line in lines if line["logger"] == "semsearch.access"]
    assert {line["route"] for line in access} == {"/ready", "/embed"}  # the probes, then ours
    embed = [line for line in access if line.get("request_id") == "deploy-42"]
    assert len(embed) == 1
    assert embed[0]["method"] == "POST" and embed[0]["status"] == 200
    assert embed[0]["batch_size"] == 3 and embed[0]["tokens"] == 9  # [CLS] x [SEP] each
    assert embed[0]["duration_ms"] > 0 and embed[0]["time"].endswith("+00:00")


def test_generate_command_prints_the_greedy_continuation(real_generator):
    generator = real_generator
    prompt = "The capital of France is"
    ids = generator.generate(generator.tokenizer.encode(prompt), max_new_tokens=8)
    expected = generator.tokenizer.decode([t for t in ids if t != generator.eos_token_id])
    result = run_cli("generate", prompt, "--max-new-tokens", "8", "--stream")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"


# --- exit codes ----------------------------------------------------------------------------------

QDRANT = {"SEMSEARCH_STORE": "qdrant", "SEMSEARCH_QDRANT_URL": "http://127.0.0.1:1"}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["embed"], {}),  # a required flag missing
        (["serve", "--port", "0x"], {}),
        (["nonsense"], {}),
        ([], {}),
        (["search", "q", "--filter", "{not json"], {}),
        (["search", "q", "-k", "0"], {}),
        (["index", "build", "in.jsonl", "--chunk-overlap", "4"], {}),  # needs --chunk-tokens
        (["index", "build", "in.jsonl", "--index-type", "HNSW"], {}),
        (["export", "--search"], {}),  # --search needs a scratch --out
        (["generate", "hi", "--top-p", "0"], {}),
        (["verify", "--texts", "9600"], {}),  # more than the shipped corpus can give
        (["serve"], {"SEMSEARCH_PORT": "0"}),
        (["index", "info"], QDRANT),  # local collections only
        (["index", "build", "in.jsonl"], {**QDRANT, "SEMSEARCH_QDRANT_URL": ":memory:"}),
        (["index", "build", "in.jsonl", "--reindex"], QDRANT),
    ],
)
def test_usage_errors_exit_2_before_any_work(args, env, tmp_path):
    result = run_cli(*args, timeout=120, env={"SEMSEARCH_INDEX_DIR": str(tmp_path), **env})
    assert result.returncode == 2, result.stderr
    assert "error: " in result.stderr and "Traceback" not in result.stderr
    if env:  # the message names the variable to fix
        assert ("SEMSEARCH_STORE" if env is QDRANT else "SEMSEARCH_") in result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, ["missing.toml", "does not exist"]),
        ("max_bach_tokens = 4096\n", ["`max_bach_tokens`", "did you mean `max_batch_tokens`"]),
        ('port = "eighty"\n', ["`port`", "valid integer"]),
        ("port = 0\n", ["`port`", "greater than or equal to 1"]),
        ("port = [8000\n", ["not valid TOML"]),
    ],
    ids=["missing", "unknown-key", "bad-type", "out-of-range", "not-toml"],
)
@pytest.mark.parametrize("given_by", ["flag", "variable"])
def test_a_bad_settings_file_is_a_usage_error_naming_the_file(tmp_path, text, words, given_by):
    path = tmp_path / "missing.toml"
    if text is not None:
        path = tmp_path / "semsearch.toml"
        path.write_text(text)
    args, env = (
        (["--config", str(path)], {})
        if given_by == "flag"
        else ([], {"SEMSEARCH_CONFIG": str(path)})
    )
    result = run_cli("serve", *args, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("semsearch serve: error: config file ")
    for word in [str(path), *words]:
        assert word in errors[0], (word, errors[0])
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "hi", "--gguf", "{tmp}/missing.gguf"], "missing.gguf"),
        (["index", "info", "--index-dir", "{tmp}/none"], "no collection in"),
        (["embed", "--input", "{tmp}/missing.txt", "--output", "{tmp}/x.npy"], "missing.txt"),
        (["index", "build", "{tmp}/missing.jsonl", "--index-dir", "{tmp}/i"], "missing.jsonl"),
    ],
)
def test_expected_failures_exit_1_with_one_line(args, message, tmp_path):
    result = run_cli(*(a.format(tmp=tmp_path) for a in args), timeout=120)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"semsearch {args[0]}")
    assert message in errors[0] and "Traceback" not in result.stderr


def test_ctrl_c_exits_130(tmp_path):
    fifo = tmp_path / "texts.txt"
    os.mkfifo(fifo)  # embed blocks reading it: a job interrupted mid-way, deterministically
    proc = subprocess.Popen(
        [*SEMSEARCH, "embed", "--input", str(fifo), "--output", str(tmp_path / "x.npy")],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:  # a writer can open the FIFO only once the reader has it open
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            assert exc.errno == errno.ENXIO and time.monotonic() < deadline
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
    try:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        os.close(writer)
    assert proc.returncode == 130, stderr
    assert "semsearch embed: interrupted" in stderr and "Traceback" not in stderr


# --- help and the contract -----------------------------------------------------------------------


def test_help_loads_no_heavy_module():
    """`--help` answers at once: no torch, web stack, runtime or measurement code."""
    forbidden = ["torch", "fastapi", "uvicorn", "onnxruntime", "faiss", "semsearch.evaluation"]
    argvs = [["--help"], *([*name.split(), "--help"] for name, _ in commands(build_parser()))]
    code = (
        "import contextlib, io, json, sys\n"
        "from semsearch.cli.main import main\n"
        f"for argv in {argvs!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        f"print(json.dumps([m for m in {forbidden!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_serve_help_names_the_config_file_and_the_precedence():
    result = run_cli("serve", "--help", timeout=60)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--config FILE" in text and "SEMSEARCH_CONFIG" in text
    assert re.search(r"these flags, then SEMSEARCH_\* environment variables, then the settings "
                     r"file .*, then defaults", text)  # fmt: skip
    assert "--log-format {text,json}" in text


def test_help_lists_the_exit_codes():
    result = run_cli("--help", timeout=60)
    assert result.returncode == 0
    epilog = result.stdout.split("exit codes:")[1]
    assert [line.split()[0] for line in epilog.splitlines() if line[:3].strip().isdigit()] == [
        "0",
        "1",
        "2",
        "130",
    ]


def test_every_flag_names_its_default_and_the_variable_it_overrides():
    """Help and docs/API.md agree on which flag overrides which SEMSEARCH_* variable."""
    variables = {env_name(field) for field in Settings.model_fields}
    in_help = set()
    for name, parser in commands(build_parser()):
        assert parser.description, f"semsearch {name} has no description"
        for action in flags(parser):
            flag = f"semsearch {name} {action.option_strings[-1]}"
            assert action.help, f"{flag} has no help"
            assert "default" in action.help or action.required, f"{flag}: help names no default"
            for named in re.findall(r"SEMSEARCH_[A-Z_]+", action.help):
                assert named in variables, f"{flag}: help names {named}, not a setting"
                if "does not apply" not in action.help:
                    in_help.add((action.option_strings[-1], named))
    overrides = re.search(r"flags\s+that\s+override\s+a\s+variable:(.*?)\.", _cli_section(), re.S)
    assert overrides, "docs/API.md no longer lists the flags that override a variable"
    pairs = re.findall(r"`(--[a-z-]+)`\s+\(`(SEMSEARCH_[A-Z_]+)`\)", overrides.group(1))
    documented = set(pairs)
    assert in_help == documented


def _cli_section() -> str:
    text = DOCS.read_text()
    start = text.index("## Command line")
    return text[start : text.index("\n## ", start + 1)]


def test_docs_list_every_command_and_every_flag():
    section = _cli_section()
    rows = {}
    for row in re.findall(r"^\| `semsearch .*$", section, re.M):
        name = re.match(r"\| `semsearch ((?:[a-z]+ ?)+)", row)
        assert name, row
        rows[name.group(1).strip()] = row
    parsers = dict(commands(build_parser()))
    assert set(rows) == set(parsers), "commands in docs/API.md differ from the parser's"
    for name, parser in parsers.items():
        own = {opt for action in flags(parser) for opt in action.option_strings}
        documented = set(re.findall(r"[\s`(](-{1,2}[a-z][a-z-]*)", rows[name]))
        assert own - documented == set(), f"semsearch {name}: flags missing in docs/API.md"
        assert documented - own == set(), f"semsearch {name}: docs/API.md lists unknown flags"
    for action in flags(build_parser()):
        assert f"`{action.option_strings[-1]}" in section, action.option_strings
