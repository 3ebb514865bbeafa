"""The PyTorch embedder: from-scratch BERT + mean pooling behind the `SentenceEmbedder` contract."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import torch

from semsearch.encoder.base import SentenceEmbedder, check_threads
from semsearch.encoder.model import BertModel
from semsearch.encoder.model_files import ModelFiles, file_sha256
from semsearch.encoder.weights import load_weights
from semsearch.encoder.wordpiece import WordPieceTokenizer

logger = logging.getLogger(__name__)


class TorchEmbedder(SentenceEmbedder):
    """Sentence vectors from the from-scratch BERT, fp32 on CPU; see `encoder.load_embedder`."""

    backend = "torch"

    def __init__(self, files: ModelFiles, threads: int | None = None) -> None:
        check_threads(threads)
        if threads is not None:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        self.files = files
        self.tokenizer = WordPieceTokenizer.from_dir(files.model_dir)
        if self.tokenizer.vocab_size > files.config.vocab_size:  # ids past the embedding table
            raise ValueError(
                f"{files.vocab_path} has {self.tokenizer.vocab_size} tokens but config.json says "
                f"vocab_size={files.config.vocab_size}; the vocab does not belong to this model"
            )
        self.model = BertModel(files.config)
        load_weights(self.model, files.weights_path)
        self.model.fuse_qkv()
        self.model.eval().requires_grad_(False)
        self._weights_sha256: str | None = None
        self._sha_lock = threading.Lock()
        logger.info(
            "loaded torch encoder from %s in %.2fs (%d threads)",
            files.model_dir,
            time.perf_counter() - started,
            torch.get_num_threads(),
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this encoder's vectors: two fingerprints equal -> same vectors."""
        with self._sha_lock:
            if self._weights_sha256 is None:
                self._weights_sha256 = file_sha256(self.files.weights_path)
        return {
            "weights_sha256": self._weights_sha256,
            "vocab_sha256": self.tokenizer.vocab_sha256,
            "dim": self.dim,
            "max_length": self.max_length,
            "pooling": self.files.pooling,
            "normalize": True,
            "backend": self.backend,
            "quantization": None,
        }

    def _embed(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None,
        normalize: bool,
    ) -> np.ndarray:
        types = None
        if token_type_ids is not None:
            types = torch.from_numpy(token_type_ids.astype(np.int64))
        with torch.inference_mode():
            vectors = self.model.sentence_embeddings(
                torch.from_numpy(input_ids.astype(np.int64)),
                torch.from_numpy(attention_mask.astype(np.int64)),
                types,
                normalize=normalize,
            )  # (B, C)
        return vectors.numpy()
