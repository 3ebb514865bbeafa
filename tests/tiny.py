"""The tiny seeded configurations unit tests build models from (transformers' test_modeling_*
habit: a small random model checks shapes, masks and parity as well as the real one)."""

from __future__ import annotations

from semsearch.encoder.config import BertConfig

# Odd sizes on purpose (99, 37): a transposed or mis-sliced weight cannot line up by accident.
TINY_BERT = BertConfig(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
)
