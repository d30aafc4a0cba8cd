"""Offset voting: postings -> ranked (episode slot, offset) candidates (numpy in, numpy out).

A true match lines up many hashes at one time difference (stored time - query time); chance hits
scatter. Votes one frame either side are pooled, since peaks jitter by a frame under noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matcher.shard import Postings

_OFFSET_BIAS = 1 << 23


@dataclass(frozen=True)
class Votes:
    """The best offset of each episode slot, strongest first."""

    slot: np.ndarray
    offset: np.ndarray  # frames: where the clip starts in the episode
    score: np.ndarray  # aligned hashes at that offset (+-1 frame)


def vote(postings: Postings, top: int = 10) -> Votes:
    if postings.slot.size == 0:
        z = np.zeros(0, np.int64)
        return Votes(z, z, z)
    offset = postings.db_t - postings.query_t
    key = (postings.slot << 24) | (offset + _OFFSET_BIAS)
    uniq, counts = np.unique(key, return_counts=True)
    # pool each key with its neighbours one frame either side (same slot, since the bias keeps them apart)
    # (keys are sorted and distinct, so a key one frame away can only be the next or previous one)
    pooled = counts.copy()
    next_to = uniq[1:] == uniq[:-1] + 1
    pooled[:-1] += np.where(next_to, counts[1:], 0)
    pooled[1:] += np.where(next_to, counts[:-1], 0)
    slot = uniq >> 24
    # best key per slot: sort by slot, then score descending, take the first of each slot
    order = np.lexsort((-pooled, slot))
    first = np.ones(order.size, bool)
    first[1:] = slot[order][1:] != slot[order][:-1]
    best = order[first]
    best = best[np.argsort(-pooled[best], kind="stable")][:top]
    return Votes(
        slot=slot[best].astype(np.int64),
        offset=((uniq[best] & ((1 << 24) - 1)) - _OFFSET_BIAS).astype(np.int64),
        score=pooled[best].astype(np.int64),
    )
