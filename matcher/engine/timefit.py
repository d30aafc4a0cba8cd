"""How the hits of one episode line up along a clip: the time scale that aligns them (numpy in, numpy out).

A clip played ``s`` times faster than the episode puts each hit at ``db_t = offset + s * t``: at the
wrong scale its offsets drift along the clip. :func:`fit_time_scale` sweeps nearby scales for the one
that piles most hits onto one offset (robust, but only as fine as a frame of drift over the clip);
:func:`fitted_line` then fits the line through that pile's hits by least squares, which averages
their frame rounding away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from citywok.matcher.engine.catalogue import Postings


@dataclass(frozen=True)
class Fit:
    """How the hits of one slot line up across nearby time scales."""

    time_scale: float  # the best
    offset: int  # frames, at the best time scale
    score: int  # hits aligned (+-1 frame) at the best time scale
    unscaled: int  # hits aligned at the time scale the sweep started from


def fit_time_scale(postings: Postings, slot: int, offset: int, time_scale: float, span: float = 0.012,
                   step: float = 0.001) -> Fit:
    """The time scale within ``span`` (relative) of ``time_scale`` at which the hits of ``slot`` near
    ``offset`` line up best: the vote's pooling hides a drift of a frame or two along the clip, and a
    stretched clip voted at scale 1 lines up only in part."""
    window = int(span * int(postings.query_t.max(initial=0))) + 3
    m = (postings.slot == slot) & (np.abs(postings.offset - offset) <= window)
    if not m.any():
        return Fit(time_scale, offset, 0, 0)
    t, db = postings.query_t[m].astype(np.float64), postings.db_t[m]
    steps = np.arange(-round(span / step), round(span / step) + 1) * step
    scores, offsets = _pile_up(db[None, :] - np.rint(t[None, :] * (1 + steps[:, None])).astype(np.int64))
    # the middle of the best run: a short clip lines up about as well over a small range of scales
    top = np.flatnonzero(scores == scores.max())
    k = int(top[np.argmin(np.abs(top - top.mean()))])
    return Fit(time_scale * (1 + steps[k]), int(offsets[k]), int(scores[k]), int(scores[steps.size // 2]))


def _pile_up(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of hit offsets, the largest pile of hits on an offset and its two neighbours, counted
    at offsets some hit holds, and that offset (the lowest of equal piles). One histogram for every row:
    a sort per row costs more than the counting."""
    lo = int(offsets.min())
    width = int(offsets.max()) - lo + 3  # a free bin either side, so the neighbours' sums need no edge case
    rows = offsets.shape[0]
    counts = np.bincount((offsets - (lo - 1) + width * np.arange(rows)[:, None]).ravel(),
                         minlength=rows * width).reshape(rows, width)
    pooled = counts.copy()
    pooled[:, 1:-1] += counts[:, :-2] + counts[:, 2:]
    pooled[counts == 0] = 0
    best = np.argmax(pooled, axis=1)
    return pooled[np.arange(rows), best], best + (lo - 1)


@dataclass(frozen=True)
class Line:
    """Where the hits of one slot lie: ``db_t = offset + slope * query_t`` (frames)."""

    slope: float
    offset: float


def fitted_line(postings: Postings, slot: int, offset: int, tolerance: float = 1.5, min_hits: int = 8,
                rounds: int = 3) -> Line | None:
    """The least-squares line of ``db_t`` against ``query_t`` through the hits of ``slot`` within
    ``tolerance`` frames of it, starting from slope 1 at ``offset`` and refitted ``rounds`` times with
    the inliers of the last fit; None when too few hits, or too short a stretch of the clip, hold it."""
    m = postings.slot == slot
    t, db = postings.query_t[m].astype(np.float64), postings.db_t[m].astype(np.float64)
    line: Line | None = None
    a, b = float(offset), 1.0
    for _ in range(rounds):
        near = np.abs(db - (a + b * t)) <= tolerance
        if near.sum() < min_hits or np.ptp(t[near]) < 4 * tolerance:
            break
        b, a = (float(v) for v in np.polyfit(t[near], db[near], 1))
        line = Line(b, a)
    return line
