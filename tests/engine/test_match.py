"""Offset voting against a plain-Python count of the same postings."""

from collections import Counter

import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.match import vote


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


def test_spread_counts_at_most_cap_aligned_hashes_from_each_part_of_the_clip():
    """A burst of aligned hashes from one moment of the clip counts for the cap; the same number spread
    over the clip counts in full. Hashes at other offsets or of other episodes do not count at all."""
    from citywok.matcher.engine.match import spread

    burst_t = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 12])  # ten aligned hashes in the first part
    spread_t = np.arange(10) * 32 + 3  # ten aligned hashes, one in each part
    for query_t, expected in ((burst_t, 4), (spread_t, 10)):
        offset = 500
        db_t = query_t + offset + np.tile([-1, 0, 1, 0, 0], 2)  # +-1 frame still counts
        noise_q = np.array([5, 40, 70])
        p = Postings(np.concatenate([query_t, noise_q, query_t[:3]]),
                     np.concatenate([np.full(10, 2), np.full(3, 2), np.full(3, 7)]),
                     np.concatenate([db_t, noise_q + offset + 9, query_t[:3] + offset]), 16)
        assert spread(p, 2, offset, part_frames=32, cap=4) == expected
