"""Spectrogram -> spectral peaks: local maxima, thinned to a fixed density per time bucket.

Everything here is local (a neighbourhood and an absolute-aligned bucket), so a file processed in
blocks yields exactly the peaks of the file processed whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.spectrogram import SILENCE


@dataclass(frozen=True)
class Peaks:
    """Peaks sorted by time then frequency. ``t`` in frames, ``f`` in bins (absolute), ``m`` their
    log power (landmarks pair the strongest)."""

    t: np.ndarray  # int64
    f: np.ndarray  # int64
    m: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.t.size)

    def __getitem__(self, s: slice) -> Peaks:
        return Peaks(self.t[s], self.f[s], self.m[s])

    @staticmethod
    def empty() -> Peaks:
        return Peaks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @staticmethod
    def concat(parts: list[Peaks]) -> Peaks:
        if not parts:
            return Peaks.empty()
        return Peaks(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("t", "f", "m")))


def _running_max(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Maximum over a centred window of 2*radius+1 along ``axis``, edges padded with -inf.

    Built from doubling steps (window 1, 2, 4, ...), so the cost is O(n log r), not O(n r).
    """
    if radius <= 0:
        return x
    width = 2 * radius + 1
    m = np.moveaxis(x, axis, 0)
    pad = np.full((radius,) + m.shape[1:], -np.inf, dtype=m.dtype)
    m = np.concatenate([pad, m, pad])
    span = 1
    while span * 2 <= width:
        m = np.maximum(m[:-span], m[span:])
        span *= 2
    if span < width:
        shift = width - span
        m = np.maximum(m[:-shift], m[shift:])
    return np.moveaxis(m, 0, axis)


def find_peaks(spec: np.ndarray, first_frame: int, lo: int, hi: int, p: FingerprintParams) -> Peaks:
    """Peaks of frames ``lo..hi`` (relative to ``spec``), whose row 0 is absolute frame ``first_frame``.

    Rows outside ``lo..hi`` are context only: they decide whether a row inside is a local maximum.
    ``first_frame + lo`` and ``first_frame + hi`` must fall on bucket boundaries (or the file's end).
    """
    if hi <= lo:
        return Peaks.empty()
    local = _running_max(_running_max(spec, p.peak_freq_radius, axis=1), p.peak_time_radius, axis=0)
    region = spec[lo:hi]
    is_peak = (region >= local[lo:hi]) & (region > SILENCE)
    rows, cols = np.divmod(np.flatnonzero(is_peak), is_peak.shape[1])  # 2-d nonzero is several times slower
    if rows.size == 0:
        return Peaks.empty()
    mags = region[rows, cols]
    t = rows.astype(np.int64) + first_frame + lo
    bucket = t // p.bucket_frames
    # strongest first within each bucket, then keep the first N of each bucket
    order = np.lexsort((-mags, bucket))
    bucket_sorted = bucket[order]
    starts = np.searchsorted(bucket_sorted, bucket_sorted, side="left")
    rank = np.arange(order.size) - starts
    keep = order[rank < p.peaks_per_bucket]
    t, f, m = t[keep], cols[keep].astype(np.int64) + p.min_bin, mags[keep]
    final = np.lexsort((f, t))
    return Peaks(t[final], f[final], m[final])


def thinned(t: np.ndarray, f: np.ndarray, m: np.ndarray, p: FingerprintParams) -> np.ndarray:
    """Which peaks the index's thinning keeps (the strongest ``peaks_per_bucket`` of each bucket), by
    time, then frequency."""
    bucket = t // p.bucket_frames
    order = np.lexsort((-m, bucket))
    sorted_buckets = bucket[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_buckets, sorted_buckets, side="left")
    keep = order[rank < p.peaks_per_bucket]
    return keep[np.lexsort((f[keep], t[keep]))]


def fine_peaks(spec: np.ndarray, peaks: Peaks, p: FingerprintParams) -> Peaks:
    """The clip's peaks at fractional frames and bins (a parabola through each peak and its neighbours
    in the log spectrogram, per axis). A hash holds its frequencies and time difference exactly, so a
    peak moved by a hypothesis must round to the bin and frame the episode's own peak sits at: moving
    an already rounded position and rounding again misses by one about as often as not."""
    rows, cols = peaks.t, peaks.f - p.min_bin
    return Peaks(rows + _vertex(spec, rows, cols, 0), cols + p.min_bin + _vertex(spec, rows, cols, 1), peaks.m)


def _vertex(spec: np.ndarray, rows: np.ndarray, cols: np.ndarray, axis: int) -> np.ndarray:
    """Where the parabola through each peak and its two neighbours along ``axis`` peaks, relative to the
    peak (within half a cell; 0 at an edge)."""
    n = spec.shape[axis]
    at = rows if axis == 0 else cols
    lo, hi = np.maximum(at - 1, 0), np.minimum(at + 1, n - 1)
    b = spec[rows, cols].astype(np.float64)
    a = (spec[lo, cols] if axis == 0 else spec[rows, lo]).astype(np.float64)
    c = (spec[hi, cols] if axis == 0 else spec[rows, hi]).astype(np.float64)
    den = a - 2 * b + c
    inside = (at > 0) & (at < n - 1) & (den < 0)
    shift = np.where(inside, 0.5 * (a - c) / np.where(inside, den, -1.0), 0.0)
    return np.clip(shift, -0.5, 0.5)
