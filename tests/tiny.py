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


def random_reference_bert(
    config: BertConfig = TINY_BERT, seed: int = 0, pooling_layer: bool = False
):
    """transformers' `BertModel` for `config`, every parameter drawn at random (seeded), in eval
    mode: the reference our BERT (loaded with the same weights) is compared with."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hf_config = transformers.BertConfig(
        **{k: getattr(config, k) for k in config.__dataclass_fields__},
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertModel(hf_config, add_pooling_layer=pooling_layer).eval()
    with torch.no_grad():  # default init leaves LayerNorm at 1/0 and biases at 0: randomize all
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model
