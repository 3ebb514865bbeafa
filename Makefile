# Every user-facing target sets itself up first: a fresh clone needs only `make serve` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup test test-slow serve lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[torch,test]'
	touch $@

setup: $(STAMP)

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
