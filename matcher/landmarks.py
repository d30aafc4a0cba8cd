"""Peaks -> landmark hashes: each anchor peak paired with its next peaks in a target zone.

A hash packs (anchor frequency, frequency delta, time delta) into 21 bits; it is stored with the
anchor's time, and matching votes on the difference between stored and query times.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from matcher.params import FingerprintParams
from matcher.peaks import Peaks

HASH_BITS = 21
LOOKAHEAD = 48  # peaks examined after each anchor; more than a target zone holds at our density


@dataclass(frozen=True)
class Hashes:
    """Landmark hashes (uint32) with their anchor times in frames (uint32), sorted by time."""

    hash: np.ndarray
    t: np.ndarray

    def __len__(self) -> int:
        return int(self.hash.size)

    @cached_property
    def distinct(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct hashes and, for each hash, its index among them (computed once per query,
        however many season shards it is looked up in)."""
        return np.unique(self.hash, return_inverse=True)

    @staticmethod
    def empty() -> Hashes:
        return Hashes(np.zeros(0, np.uint32), np.zeros(0, np.uint32))

    @staticmethod
    def concat(parts: list[Hashes]) -> Hashes:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Hashes.empty()
        return Hashes(np.concatenate([p.hash for p in parts]), np.concatenate([p.t for p in parts]))


def pack_hash(f1: np.ndarray, df: np.ndarray, dt: np.ndarray) -> np.ndarray:
    return ((f1 << 13) | ((df + 64) << 6) | dt).astype(np.uint32)


def landmarks(peaks: Peaks, p: FingerprintParams, anchors: int | None = None) -> Hashes:
    """Hashes for the first ``anchors`` peaks (all by default), pairing each with up to ``fanout``
    later peaks with ``target_dt_min <= dt <= target_dt_max`` and ``|df| <= target_df_max``."""
    n = len(peaks)
    a = n if anchors is None else min(anchors, n)
    if a == 0:
        return Hashes.empty()
    t, f = peaks.t, peaks.f
    idx = np.arange(a)
    taken = np.zeros(a, dtype=np.int64)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    for k in range(1, LOOKAHEAD + 1):
        j = idx + k
        inside = j < n
        if not inside.any():
            break
        jj = np.where(inside, j, 0)
        dt = t[jj] - t[idx]
        df = f[jj] - f[idx]
        ok = inside & (dt >= p.target_dt_min) & (dt <= p.target_dt_max) & (np.abs(df) <= p.target_df_max)
        ok &= taken < p.fanout
        if dt[inside].min(initial=p.target_dt_max + 1) > p.target_dt_max:
            break
        taken += ok
        out_i.append(idx[ok])
        out_j.append(jj[ok])
    if not out_i:
        return Hashes.empty()
    i = np.concatenate(out_i)
    j = np.concatenate(out_j)
    order = np.argsort(i, kind="stable")
    i, j = i[order], j[order]
    h = pack_hash(f[i], f[j] - f[i], t[j] - t[i])
    return Hashes(h, t[i].astype(np.uint32))
