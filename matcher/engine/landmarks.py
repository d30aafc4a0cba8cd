"""Peaks -> landmark hashes: each anchor peak paired with the strongest peaks of a target zone after it.

A hash packs (anchor frequency, frequency delta, time delta) into 21 bits; it is stored with the
anchor's time, and matching votes on the difference between stored and query times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.peaks import Peaks

HASH_BITS = 21


@dataclass(frozen=True)
class Hashes:
    """Landmark hashes (uint32) with their anchor times in frames (uint32), sorted by time."""

    hash: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return int(self.hash.size)

    @cached_property
    def by_hash(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The query sorted by hash, once however many season shards it is looked up in: the sorted
        distinct hashes, the (stable) order that sorts the query, and where each distinct hash's run
        starts in that order."""
        order = hash_order(self.hash)
        ordered = self.hash[order]
        first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, np.intp)
        return ordered[first], order, first

    @staticmethod
    def empty() -> Hashes:
        return Hashes(np.zeros(0, np.uint32), np.zeros(0, np.uint32))

    @staticmethod
    def concat(parts: list[Hashes]) -> Hashes:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Hashes.empty()
        return Hashes(np.concatenate([p.hash for p in parts]), np.concatenate([p.t for p in parts]))


def hash_order(h: np.ndarray) -> np.ndarray:
    """The stable order that sorts ``HASH_BITS``-bit hashes: two passes of numpy's radix sort of 16-bit
    keys (its stable sort of wider integers is a merge sort, several times slower)."""
    low = np.argsort((h & np.uint32(0xFFFF)).astype(np.uint16), kind="stable")
    return low[np.argsort((h[low] >> np.uint32(16)).astype(np.uint16), kind="stable")]


def pack_hash(f1: np.ndarray, df: np.ndarray, dt: np.ndarray) -> np.ndarray:
    return ((f1 << 13) | ((df + 64) << 6) | dt).astype(np.uint32)


def zone_peaks(p: FingerprintParams) -> int:
    """The most peaks a target zone can hold: it spans at most this many buckets of ``peaks_per_bucket``."""
    return (p.target_dt_max // p.bucket_frames + 2) * p.peaks_per_bucket


def landmarks(peaks: Peaks, p: FingerprintParams, anchors: int | None = None) -> Hashes:
    """Hashes for the first ``anchors`` peaks (all by default), pairing each with the ``fanout`` strongest
    later peaks with ``target_dt_min <= dt <= target_dt_max`` and ``target_df_min <= |df| <= target_df_max``
    (equal strength: the nearer one).

    The strongest rather than the nearest: noise buries weak peaks and adds its own, so a pair of loud
    peaks is the one a noisy clip still holds, and which peaks are loudest does not change when noise
    peaks come between them.
    """
    n = len(peaks)
    a = n if anchors is None else min(anchors, n)
    if a == 0 or n < 2:
        return Hashes.empty()
    t, f = peaks.t, peaks.f
    k = min(zone_peaks(p), n - 1)
    j = np.arange(a)[:, None] + np.arange(1, k + 1)[None, :]  # the next k peaks of each anchor
    inside = j < n
    j = np.minimum(j, n - 1)
    dt = t[j] - t[:a, None]
    adf = np.abs(f[j] - f[:a, None])
    ok = inside & (dt >= p.target_dt_min) & (dt <= p.target_dt_max)
    ok &= (adf >= p.target_df_min) & (adf <= p.target_df_max)
    strength = np.where(ok, peaks.m[j], -np.inf)
    top = np.argsort(-strength, axis=1, kind="stable")[:, : p.fanout]
    chosen = np.take_along_axis(ok, top, axis=1)
    i = np.broadcast_to(np.arange(a)[:, None], top.shape)[chosen]
    jj = np.take_along_axis(j, top, axis=1)[chosen]
    h = pack_hash(f[i], f[jj] - f[i], t[jj] - t[i])
    return Hashes(h, t[i].astype(np.uint32))


def top_pairs(peaks: Peaks, p: FingerprintParams, fanout: int, dt_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The anchor and target indices of :func:`top_landmarks`' pairs (at least two peaks), by anchor,
    each anchor's strongest first. Peaks are sorted by time: an anchor's candidates are the next peaks up
    to ``dt_max`` frames later, no more columns than the most crowded anchor has."""
    n = len(peaks)
    reach = np.searchsorted(peaks.t, peaks.t + dt_max, side="right") - np.arange(n) - 1
    width = max(1, min(zone_peaks(replace(p, target_dt_max=dt_max)), n - 1, int(reach.max())))
    # past the last peak, sentinels no pair accepts: every candidate index stays inside
    t = np.concatenate([peaks.t, np.full(width, peaks.t[-1] + dt_max + 1)]).astype(np.int32)
    f = np.concatenate([peaks.f, np.zeros(width, peaks.f.dtype)]).astype(np.int32)
    m = np.concatenate([peaks.m, np.zeros(width, peaks.m.dtype)]).astype(np.float32)
    j = np.arange(n, dtype=np.int32)[:, None] + np.arange(1, width + 1, dtype=np.int32)[None, :]
    dt = t[j] - t[:n, None]
    adf = np.abs(f[j] - f[:n, None])
    ok = (dt >= p.target_dt_min) & (dt <= dt_max) & (adf >= p.target_df_min) & (adf <= p.target_df_max)
    strength = np.where(ok, m[j], np.float32(-np.inf))
    rows = np.arange(n)
    cols = np.zeros((n, fanout), np.intp)
    good = np.zeros((n, fanout), bool)
    for r in range(fanout):
        col = np.argmax(strength, axis=1)
        cols[:, r] = col
        good[:, r] = strength[rows, col] > -np.inf
        strength[rows, col] = -np.inf
    i = np.broadcast_to(rows[:, None], cols.shape)[good]
    return i, (i + 1 + cols[good]).astype(np.intp)
