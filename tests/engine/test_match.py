"""Offset voting against a plain-Python count of the same postings."""

from collections import Counter

import numpy as np

from matcher.match import vote
from matcher.shard import Postings


def _reference(query_t, slot, db_t):
    """Best (score, offset) per slot, pooling each offset with its neighbours one frame either side."""
    counts = Counter(zip(slot.tolist(), (db_t - query_t).tolist(), strict=True))
    best = {}
    for (s, off), _ in counts.items():
        score = counts[(s, off - 1)] + counts[(s, off)] + counts[(s, off + 1)]
        if s not in best or score > best[s][0] or (score == best[s][0] and off < best[s][1]):
            best[s] = (score, off)
    return best


def test_vote_pools_neighbouring_offsets_per_episode():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        query_t = rng.integers(0, 300, n)
        slot = rng.integers(0, 6, n)
        db_t = query_t + rng.integers(-4, 5, n) + 1000 * slot  # crowded offsets: many neighbours
        v = vote(Postings(query_t, slot, db_t, n), top=10)
        ref = _reference(query_t, slot, db_t)
        assert sorted(v.slot.tolist()) == sorted(ref)
        for s, off, score in zip(v.slot.tolist(), v.offset.tolist(), v.score.tolist(), strict=True):
            assert (score, off) == ref[s]
        assert list(v.score) == sorted(v.score, reverse=True)
