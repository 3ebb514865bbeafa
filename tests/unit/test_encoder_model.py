"""The BERT math on a tiny seeded config, against transformers' `BertModel` with the same weights.

Like transformers' `test_modeling_bert.py`: a small random model is enough to check shapes, the
padding mask, token types and positions; the real checkpoint is covered by the conformance tests.
"""

from __future__ import annotations

import pytest
import torch
from tiny import TINY_BERT as TINY
from tiny import random_reference_bert

from semsearch.encoder.config import BertConfig
from semsearch.encoder.layers import Packing, group_by_length
from semsearch.encoder.model import BertModel
from semsearch.encoder.pooling import l2_normalize, mean_pool, mean_pool_packed
from semsearch.encoder.weights import match_state_dict

transformers = pytest.importorskip("transformers")


def _hf_model(config: BertConfig, seed: int = 0):
    return random_reference_bert(config, seed, pooling_layer=True)


def _ours_from(hf) -> BertModel:
    config = BertConfig.from_dict(hf.config.to_dict())
    model = BertModel(config).eval()
    model.load_state_dict(match_state_dict(hf.state_dict(), model), strict=True)
    return model


@pytest.fixture(scope="module")
def pair():
    hf = _hf_model(TINY)
    return hf, _ours_from(hf)


def _batch(seed: int = 1, B: int = 4, T: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY.vocab_size, (B, T), generator=g)
    types = torch.randint(0, TINY.type_vocab_size, (B, T), generator=g)
    lengths = torch.tensor([T, 1, 5, T - 3][:B])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # right padding
    ids = ids * mask  # [PAD] = 0 at padding, as a tokenizer writes it
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}


def _assert_real_close(ours: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> None:
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real], atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_hidden_states_match_transformers(pair):
    hf, ours = pair
    batch = _batch()
    ref = hf(**batch).last_hidden_state
    out = ours(**batch)
    assert out.shape == ref.shape == (4, 11, TINY.hidden_size)
    _assert_real_close(out, ref, batch["attention_mask"])
    assert torch.all(out[~batch["attention_mask"].bool()] == 0)  # padding rows come back zero


@torch.inference_mode()
def test_no_padding_and_single_sequence(pair):
    hf, ours = pair
    for B, T in [(1, 7), (3, 9)]:
        ids = torch.randint(1, TINY.vocab_size, (B, T), generator=torch.Generator().manual_seed(T))
        mask = torch.ones_like(ids)
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(ours(ids, mask), ref, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_left_padding_uses_column_positions_like_transformers(pair):
    hf, ours = pair
    batch = _batch()
    batch = {k: v.flip(1) for k, v in batch.items()}  # padding on the left now
    ref = hf(**batch).last_hidden_state
    _assert_real_close(ours(**batch), ref, batch["attention_mask"])


@torch.inference_mode()
def test_padding_content_and_amount_do_not_matter(pair):
    _, ours = pair
    batch = _batch()
    base = ours.sentence_embeddings(**batch)
    noisy = dict(batch)
    pad = ~batch["attention_mask"].bool()
    noisy["input_ids"] = batch["input_ids"].masked_fill(pad, 42)  # garbage under the mask
    torch.testing.assert_close(ours.sentence_embeddings(**noisy), base, atol=1e-6, rtol=0)
    wide = {k: torch.nn.functional.pad(v, (0, 20)) for k, v in batch.items()}  # 20 more pad columns
    torch.testing.assert_close(ours.sentence_embeddings(**wide), base, atol=1e-6, rtol=0)


@torch.inference_mode()
def test_batch_equals_one_by_one(pair):
    _, ours = pair
    batch = _batch()
    together = ours.sentence_embeddings(**batch)
    for i, n in enumerate(batch["attention_mask"].sum(1).tolist()):
        alone = ours.sentence_embeddings(**{k: v[i : i + 1, :n] for k, v in batch.items()})
        torch.testing.assert_close(alone[0], together[i], atol=1e-6, rtol=0)


@torch.inference_mode()
def test_sentence_embeddings_are_mean_pooled_and_normalized(pair):
    hf, ours = pair
    batch = _batch()
    ref = hf(**batch).last_hidden_state
    pooled = mean_pool(ref, batch["attention_mask"])
    raw = ours.sentence_embeddings(**batch, normalize=False)
    torch.testing.assert_close(raw, pooled, atol=1e-5, rtol=1e-5)
    unit = ours.sentence_embeddings(**batch)
    torch.testing.assert_close(unit, l2_normalize(pooled), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(4))


@torch.inference_mode()
def test_padded_layout_matches_transformers(pair):
    """`forward_padded` (the layout the ONNX export traces) on right and left padding."""
    hf, ours = pair
    for flip in (False, True):
        batch = {k: v.flip(1) if flip else v for k, v in _batch().items()}
        ref = hf(**batch).last_hidden_state
        out = ours.forward_padded(**batch)
        assert out.shape == ref.shape == (4, 11, TINY.hidden_size)
        _assert_real_close(out, ref, batch["attention_mask"])


@torch.inference_mode()
def test_padded_and_packed_layouts_pool_to_the_same_vectors(pair):
    _, ours = pair
    batch = _batch(seed=7)
    padded = mean_pool(ours.forward_padded(**batch), batch["attention_mask"])
    packed = ours.sentence_embeddings(**batch, normalize=False)
    torch.testing.assert_close(padded, packed, atol=1e-6, rtol=0)


@torch.inference_mode()
def test_fused_qkv_equals_separate_projections():
    hf = _hf_model(TINY, seed=3)
    separate, fused = _ours_from(hf), _ours_from(hf)
    fused.fuse_qkv()
    assert "encoder.layer.0.attention.self.qkv_weight" not in fused.state_dict()  # names unchanged
    batch = _batch(seed=5)
    torch.testing.assert_close(fused(**batch), separate(**batch), atol=1e-6, rtol=0)


def test_packing_round_trip():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    packing = Packing.from_mask(mask)
    assert packing.num_tokens == 8
    assert packing.lengths.tolist() == [3, 1, 4]
    assert packing.seq_ids.tolist() == [2, 2, 2, 2, 0, 0, 0, 1]  # longest first
    assert packing.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    x = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    packed = packing.pack(x)  # (N, 2)
    assert packed.shape == (8, 2)
    padded = packing.pad(packed)
    torch.testing.assert_close(padded * mask[..., None], x * mask[..., None])
    (group,) = packing.groups  # all short: one padded attention call
    assert (group.batch_size, group.seq_len) == (3, 4) and group.attn_mask.shape == (3, 1, 1, 4)
    torch.testing.assert_close(group.unpad(group.pad(packed)), packed)
    full = Packing.from_mask(torch.ones(2, 3, dtype=torch.long))
    assert full.index is None and full.num_tokens == 6 and full.groups[0].attn_mask is None


def test_attention_groups_bound_padding():
    assert group_by_length([8, 5, 1]) == [[8, 5, 1]]  # short sequences share one call
    assert group_by_length([256, 250, 240, 100, 90, 20, 3]) == [[256, 250, 240], [100, 90], [20, 3]]
    lengths = [200, 120, 100, 60, 33, 30, 10]
    mask = (torch.arange(200)[None, :] < torch.tensor(lengths)[:, None]).long()
    packing = Packing.from_mask(mask)
    assert [g.batch_size for g in packing.groups] == [len(r) for r in group_by_length(lengths)]
    assert packing.groups[-1].stop == packing.num_tokens == sum(lengths)


def test_mean_pool_packed_equals_padded():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    hidden = torch.randn(2, 3, 5)
    packing = Packing.from_mask(mask)
    torch.testing.assert_close(
        mean_pool_packed(packing.pack(hidden), packing.seq_ids, packing.lengths),
        mean_pool(hidden, mask),
    )


def test_sequence_longer_than_position_table_is_refused(pair):
    _, ours = pair
    T = TINY.max_position_embeddings + 1
    ids = torch.ones(1, T, dtype=torch.long)
    for forward in (ours, ours.forward_padded):
        with pytest.raises(ValueError, match="max_position_embeddings"):
            forward(ids, torch.ones_like(ids))


def test_parameter_names_equal_checkpoint_names(pair):
    hf, ours = pair
    hf_names = {k for k in hf.state_dict() if not k.startswith("pooler.")}
    hf_names.discard("embeddings.position_ids")
    hf_names.discard("embeddings.token_type_ids")
    assert set(ours.state_dict()) == hf_names
