"""The `semsearch` console script, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from serving import REPO, free_port, running_server

SEMSEARCH = [sys.executable, "-m", "semsearch"]


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEMSEARCH, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_embed_command_writes_rows_in_input_order(tmp_path):
    from semsearch.encoder import load_embedder

    texts = ["first line", "a second, longer line of text", "", "ünïcödé"]
    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)))

    expected = load_embedder(backend="torch").encode(texts)
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
    assert result.returncode != 0
    assert "bad.jsonl:2" in result.stderr


def test_verify_passes_on_the_real_model():
    result = run_cli("verify", "--texts", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tokenizer ids vs transformers fast tokenizer" in result.stdout
    assert "encoder [torch] vs sentence-transformers" in result.stdout
    assert "FAIL" not in result.stdout


def test_serve_answers_health_and_embed(tmp_path):
    port = free_port()
    env = {**os.environ, "SEMSEARCH_INDEX_DIR": str(tmp_path / "index")}
    with running_server([*SEMSEARCH, "serve", "--port", str(port)], port, env) as base:
        response = httpx.post(f"{base}/embed", json={"inputs": ["hello", "world"]}, timeout=30)
        assert response.status_code == 200
        vectors = np.asarray(response.json())
        assert vectors.shape == (2, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert httpx.get(f"{base}/info", timeout=10).json()["encoder"]["backend"] == "onnx-int8"


@pytest.mark.parametrize("args", [["embed"], ["serve", "--port", "0x"], ["nonsense"]])
def test_bad_arguments_exit_non_zero(args):
    assert run_cli(*args, timeout=60).returncode != 0


def test_generate_command_prints_the_greedy_continuation():
    from semsearch.decoder import load_generator

    generator = load_generator()
    prompt = "The capital of France is"
    ids = generator.generate(generator.tokenizer.encode(prompt), max_new_tokens=8)
    expected = generator.tokenizer.decode([t for t in ids if t != generator.eos_token_id])
    result = run_cli("generate", prompt, "--max-new-tokens", "8", "--stream")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + "\n"
