"""The prefix cache's bookkeeping: where prefills split, what is kept, what is evicted."""

from __future__ import annotations

import random

import pytest
import torch

from semsearch.decoder import prefix_cache
from semsearch.decoder.kv_cache import KVCache
from semsearch.decoder.prefix_cache import PrefixCache, split_points

M = 7  # the message-start marker in these token lists
L, KV, D = 2, 2, 4  # layers, key/value heads, head size of the caches below
TOKEN_BYTES = 2 * L * KV * D * 4  # keys and values, fp32


MIN_CHUNK = 16  # the positions below are written for this gap between splits


@pytest.fixture(autouse=True)
def _min_chunk(monkeypatch):
    monkeypatch.setattr(prefix_cache, "MIN_CHUNK", MIN_CHUNK)


def prompt(*message_lengths: int) -> list[int]:
    """Messages of the given lengths, each starting with the marker, other tokens never it."""
    ids: list[int] = []
    for n in message_lengths:
        ids += [M] + [100 + len(ids) + i for i in range(n - 1)]
    return ids


def filled_cache(ids: list[int]) -> KVCache:
    """A cache whose keys and values at each position are a function of the tokens up to it,
    as a model's are."""
    cache = KVCache(L, KV, D, len(ids) + 8)
    for pos in range(len(ids)):
        value = float(sum(ids[: pos + 1]) % 9973)
        cache.k[:, :, :, pos] = value
        cache.v[:, :, :, pos] = -value
    cache.length = len(ids)
    return cache


def test_split_points_are_message_starts_apart_and_before_the_end():
    ids = prompt(20, 5, 30, 40, 3)
    # starts: 20 (kept), 25 (too close to 20), 55, 95, 102 (too close to 95)
    assert split_points(ids, M) == [20, 55, 95]
    assert split_points(ids, None) == []
    assert split_points(prompt(10, 40), M) == []  # the first start is 10 tokens in
    assert split_points([M] * 100, M) == [16, 32, 48, 64, 80, 96]


def test_split_points_within_a_shared_beginning_do_not_depend_on_what_follows():
    rng = random.Random(0)
    for _ in range(300):
        shared = [rng.choice([M, 1, 2]) for _ in range(rng.randrange(1, 120))]
        a = shared + [rng.choice([M, 1, 2]) for _ in range(rng.randrange(0, 80))]
        b = shared + [rng.choice([M, 1, 2]) for _ in range(rng.randrange(0, 80))]
        pa, pb = split_points(a, M), split_points(b, M)
        # Whether q is a point depends on token q, which the two need not share.
        q = len(shared)
        assert [p for p in pa if p < q] == [p for p in pb if p < q]
        assert all(p >= MIN_CHUNK for p in pa)


def test_a_prompt_reuses_the_longest_prefix_at_one_of_its_own_split_points():
    cache = PrefixCache(1 << 20)
    first = prompt(20, 40, 30)  # split at 20 and 60
    cache.store(first, split_points(first, M), filled_cache(first))
    assert len(cache) == 1 and cache.nbytes == 60 * TOKEN_BYTES  # up to the last split only

    same_start = first[:60] + prompt(25)  # the first two messages, then another question
    target = KVCache(L, KV, D, 100)
    assert cache.restore(same_start, split_points(same_start, M), target) == 60
    expected = filled_cache(same_start)
    assert target.length == 60
    assert torch.equal(target.k[:, :, :, :60], expected.k[:, :, :, :60])
    assert torch.equal(target.v[:, :, :, :60], expected.v[:, :, :, :60])

    other_middle = first[:20] + prompt(35, 30)  # the same first message only
    assert cache.restore(other_middle, split_points(other_middle, M), KVCache(L, KV, D, 90)) == 20

    # Same tokens up to 59 but the second message runs on: 60 is not a split of this prompt, and
    # position 20's chunk is not [20, 60) here, so nothing past 20 may be reused.
    runs_on = first[:60] + [5] * 40
    assert split_points(runs_on, M) == [20]
    assert cache.restore(runs_on, [20], KVCache(L, KV, D, 100)) == 20

    stranger = prompt(30, 30)
    empty = KVCache(L, KV, D, 64)
    assert cache.restore(stranger, split_points(stranger, M), empty) == 0 and empty.length == 0


def test_a_split_inside_a_kept_prefix_is_reused_only_where_that_prompt_split():
    cache = PrefixCache(1 << 20)
    long = prompt(20, 40, 30, 20)  # splits 20, 60, 90
    cache.store(long, split_points(long, M), filled_cache(long))
    # Shares the first 60 tokens and splits at 60: reused up to 60, inside the kept 90.
    shorter = long[:60] + prompt(20)
    assert cache.restore(shorter, split_points(shorter, M), KVCache(L, KV, D, 90)) == 60


def test_the_cache_stays_within_its_bytes_dropping_the_least_recently_used():
    budget = 110 * TOKEN_BYTES
    cache = PrefixCache(budget)
    a, b, c = (prompt(20 + i, 30, 20) for i in range(3))  # kept: 50, 51 and 52 tokens
    for ids in (a, b):
        cache.store(ids, split_points(ids, M), filled_cache(ids))
    assert len(cache) == 2 and cache.nbytes <= budget
    cache.restore(a, split_points(a, M), KVCache(L, KV, D, 80))  # a is now the most recent
    cache.store(c, split_points(c, M), filled_cache(c))  # 50 + 51 + 52 > 110: b goes
    assert cache.nbytes <= budget
    assert cache.restore(b, split_points(b, M), KVCache(L, KV, D, 80)) == 0
    assert cache.restore(a, split_points(a, M), KVCache(L, KV, D, 80)) == 50
    huge = prompt(200, 20)
    cache.store(huge, split_points(huge, M), filled_cache(huge))  # larger than the budget
    assert cache.restore(huge, split_points(huge, M), KVCache(L, KV, D, 240)) == 0
    assert cache.nbytes <= budget


def test_a_longer_prefix_replaces_the_kept_prefix_it_extends():
    cache = PrefixCache(1 << 20)
    turn1 = prompt(20, 30, 20)  # splits 20, 50
    turn2 = turn1[:50] + prompt(30, 20, 20)  # the next turn: splits 20, 50, 80, 100
    cache.store(turn1, split_points(turn1, M), filled_cache(turn1))
    cache.store(turn2, split_points(turn2, M), filled_cache(turn2))
    assert len(cache) == 1 and cache.nbytes == 100 * TOKEN_BYTES
    assert cache.restore(turn1, split_points(turn1, M), KVCache(L, KV, D, 80)) == 50


def test_zero_bytes_keeps_nothing_and_negative_is_refused():
    cache = PrefixCache(0)
    ids = prompt(20, 30, 20)
    cache.store(ids, split_points(ids, M), filled_cache(ids))
    assert len(cache) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixCache(-1)
