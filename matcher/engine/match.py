"""Offset voting: postings -> ranked (episode slot, offset) candidates (numpy in, numpy out).

A true match lines up many hashes at one time difference (stored time - query time); chance hits
scatter. Votes one frame either side are pooled, since peaks jitter by a frame under noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from citywok.matcher.engine.catalogue import Postings

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
    key = (postings.slot << 24) | (postings.offset + _OFFSET_BIAS)
    # pool each key with its neighbours one frame either side (same slot, since the bias keeps them apart)
    uniq, pooled = _pooled(key)
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


def _pooled(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and how many of ``values`` lie within one of each. The distinct values are
    sorted, so a value one away can only be the next or the previous one."""
    uniq, counts = np.unique(values, return_counts=True)
    pooled = counts.copy()
    next_to = uniq[1:] == uniq[:-1] + 1
    pooled[:-1] += np.where(next_to, counts[1:], 0)
    pooled[1:] += np.where(next_to, counts[:-1], 0)
    return uniq, pooled


def spread(postings: Postings, slot: int, offset: int, part_frames: int, cap: int) -> int:
    """Hashes of episode ``slot`` aligned at ``offset`` (+-1 frame), counting at most ``cap`` from each
    ``part_frames`` of the clip. A true match is spread over the clip; a burst from one moment of it (a
    chord or a sample two pieces share) is a coincidence, and counts for little."""
    m = (postings.slot == slot) & (np.abs(postings.offset - offset) <= 1)
    parts = np.bincount(postings.query_t[m] // part_frames)
    return int(np.minimum(parts, cap).sum())


def repeats(postings: Postings, slot: int, best: int, floor: float, limit: int = 5) -> list[tuple[int, int]]:
    """Other offsets (frames, with their scores) where episode ``slot`` gathers at least ``floor``
    aligned hashes, apart from ``best`` and from each other by more than two frames, strongest first:
    the clip's audio occurs there too (a loop, a reprised cue), so the offset is one of several."""
    m = postings.slot == slot
    uniq, pooled = _pooled(postings.offset[m])
    strong = np.flatnonzero(pooled >= floor)
    out: list[tuple[int, int]] = []
    taken = [best]
    for i in strong[np.argsort(-pooled[strong], kind="stable")].tolist():
        off = int(uniq[i])
        if all(abs(off - t) > 2 for t in taken):
            taken.append(off)
            out.append((off, int(pooled[i])))
            if len(out) == limit:
                break
    return out
