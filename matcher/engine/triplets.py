"""Peaks -> triplet hashes that a speed, tempo or pitch change leaves alone, and the vote that reads
each hit's own scales (numpy in, numpy out).

A triplet is an anchor peak a with two of its strongest targets b and c (tb <= tc). Scaling time by any
factor keeps r = (tb - ta) / (tc - ta); scaling frequency keeps log2(fb / fa) and log2(fc / fa). Those
three, quantized, make the hash, with a coarse band of fa: a pitch change moves fa by a few tenths of an
octave at most, so a query looks up the one or two bands its triplet can have come from. A stored triplet
keeps its anchor's time, tc - ta and fa, so each hit gives its own time scale (stored tc - ta over the
clip's), pitch scale (the clip's fa over the stored one) and offset: one lookup serves every scale, where
the hypotheses of scale.py look each one up apart (compare Panako's triplets, and Sonnleitner and
Widmer's quads). The hits vote on (episode, offset, time scale, pitch scale); the best cells are
candidates for the scale search to refine and verify, never answers on their own.

Positions are fractional (:func:`~citywok.matcher.engine.peaks.fine_peaks`) on both sides: r and the
ratios are continuous, and rounded peaks put them on a lattice that quantizes unevenly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes, top_pairs
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.peaks import Peaks, thinned
from citywok.matcher.engine.scale import Found, Hypothesis

PEAKS_PER_BUCKET = 8  # triplets are made of the strongest peaks only: the ones an edit leaves in place
FANOUT = 3  # an anchor's strongest targets; each two of them with the anchor are a triplet
DT_MAX = 31  # frames from the anchor to its targets (the stored tc - ta fits 7 bits of quarter frames)
R_STEPS = 16  # the time ratio's bins in 0..1
OCTAVE_STEPS = 24  # bins per octave of a frequency ratio ...
RATIO_BINS = 128  # ... centred on 1, 7 bits
BAND_OCTAVES = 0.8  # the anchor's coarse band: wider than a pitch change moves it, so two bands at most
BANDS = 8
PAYLOAD_BITS = 16  # a stored value: anchor frame << 16 | tc - ta in quarter frames << 9 | fa in half bins


@dataclass(frozen=True)
class Triplets:
    """Triplet postings of one episode: hashes and their stored values (see ``PAYLOAD_BITS``)."""

    hash: np.ndarray  # uint32
    value: np.ndarray  # uint64

    def __len__(self) -> int:
        return int(self.hash.size)

    @staticmethod
    def empty() -> Triplets:
        return Triplets(np.zeros(0, np.uint32), np.zeros(0, np.uint64))

    @staticmethod
    def concat(parts: list[Triplets]) -> Triplets:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Triplets.empty()
        return Triplets(np.concatenate([p.hash for p in parts]), np.concatenate([p.value for p in parts]))


@dataclass(frozen=True)
class Shapes:
    """Triplets before quantization: anchor time, tc - ta and fa (fractional), and the invariants."""

    t: np.ndarray
    dt: np.ndarray
    f: np.ndarray
    r: np.ndarray
    lb: np.ndarray  # log2(fb / fa)
    lc: np.ndarray  # log2(fc / fa)

    def __len__(self) -> int:
        return int(self.t.size)


def strongest(peaks: Peaks, p: FingerprintParams, per_bucket: int = PEAKS_PER_BUCKET) -> np.ndarray:
    """Which peaks triplets are made of: the strongest ``per_bucket`` of each bucket, a flag per peak. A
    whole bucket must be there (the streamed fingerprinter asks when its peaks are found)."""
    keep = np.zeros(len(peaks), bool)
    keep[thinned(peaks.t, peaks.f, peaks.m, replace(p, peaks_per_bucket=per_bucket))] = True
    return keep


def clip_shapes(peaks: Peaks, fine: Peaks, p: FingerprintParams, per_bucket: int = PEAKS_PER_BUCKET,
                fanout: int = FANOUT) -> Shapes:
    """A clip's triplets from its dense peaks and the same peaks at fractional positions: the strongest of
    each bucket of the clip's own time, as an episode's are of its time. More peaks and targets than an
    episode's find its triplets among music laid over it, at several times the lookups."""
    pick = np.flatnonzero(strongest(peaks, p, per_bucket))
    picked = [Peaks(x.t[pick], x.f[pick], x.m[pick]) for x in (peaks, fine)]
    return shapes(picked[0], picked[1], p, fanout=fanout)


def shapes(peaks: Peaks, fine: Peaks, p: FingerprintParams, anchors: int | None = None, fanout: int = FANOUT
           ) -> Shapes:
    """The triplets of the first ``anchors`` peaks (all by default): ``peaks`` picks the targets (by frame
    and bin, the strongest ``FANOUT`` up to ``DT_MAX`` frames on), ``fine`` (the same peaks, fractional)
    gives the values."""
    empty = np.zeros(0)
    if len(peaks) < 3:
        return Shapes(empty, empty, empty, empty, empty, empty)
    i, k = top_pairs(peaks, p, fanout, DT_MAX)
    n = len(peaks) if anchors is None else anchors
    keep = i < n
    i, k = i[keep], k[keep]
    targets = np.full((n, fanout), -1, np.int64)
    targets[i, np.arange(i.size) - np.searchsorted(i, i, side="left")] = k
    a_, b_, c_ = [], [], []
    for x in range(fanout):
        for y in range(x + 1, fanout):
            ok = (targets[:, x] >= 0) & (targets[:, y] >= 0)
            a_.append(np.flatnonzero(ok))
            b_.append(targets[ok, x])
            c_.append(targets[ok, y])
    a, b, c = (np.concatenate(v) for v in (a_, b_, c_))
    later = fine.t[b] > fine.t[c]
    b, c = np.where(later, c, b), np.where(later, b, c)
    ta, tb, tc = fine.t[a], fine.t[b], fine.t[c]
    good = (tc - tb >= 1) & (tc - ta <= DT_MAX + 0.5) & (fine.f[a] > 0)
    a, b, c, ta, tb, tc = a[good], b[good], c[good], ta[good], tb[good], tc[good]
    fa = fine.f[a]
    return Shapes(ta, tc - ta, fa, (tb - ta) / (tc - ta), np.log2(fine.f[b] / fa), np.log2(fine.f[c] / fa))


def band(f: np.ndarray, p: FingerprintParams) -> np.ndarray:
    """The coarse band of anchor frequencies ``f`` (bins)."""
    return np.clip(np.floor((np.log2(np.maximum(f, 1e-9)) - math.log2(p.min_bin)) / BAND_OCTAVES), 0, BANDS - 1
                   ).astype(np.int64)


def hashes(s: Shapes, bands: np.ndarray) -> np.ndarray:
    """21-bit hashes: band << 18 | r << 14 | log2(fb / fa) << 7 | log2(fc / fa)."""
    rq = np.clip(np.floor(s.r * R_STEPS), 0, R_STEPS - 1).astype(np.int64)
    half = RATIO_BINS // 2
    bq = np.clip(np.floor(s.lb * OCTAVE_STEPS) + half, 0, RATIO_BINS - 1).astype(np.int64)
    cq = np.clip(np.floor(s.lc * OCTAVE_STEPS) + half, 0, RATIO_BINS - 1).astype(np.int64)
    return ((bands << 18) | (rq << 14) | (bq << 7) | cq).astype(np.uint32)


def pack_values(t: np.ndarray, dt: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Stored values: anchor frame, tc - ta in quarter frames, fa in half bins."""
    frame = np.rint(t).astype(np.uint64)
    dq = np.clip(np.rint(dt * 4), 0, 127).astype(np.uint64)
    fq = np.clip(np.rint(f * 2), 0, 511).astype(np.uint64)
    return (frame << np.uint64(PAYLOAD_BITS)) | (dq << np.uint64(9)) | fq


def unpack_values(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor frame, tc - ta, fa) of stored values."""
    v = v.astype(np.int64)
    return v >> PAYLOAD_BITS, ((v >> 9) & 127) / 4.0, (v & 511) / 2.0


def index_triplets(s: Shapes, p: FingerprintParams) -> Triplets:
    """An episode's triplets as stored: each under its own anchor's band."""
    return Triplets(hashes(s, band(s.f, p)), pack_values(s.t, s.dt, s.f))


def query_hashes(s: Shapes, p: FingerprintParams, pitch_range: tuple[float, float]) -> Hashes:
    """A clip's lookups: each triplet under every band its anchor can have come from within
    ``pitch_range``; a hash's time is the triplet's index in ``s``."""
    lo, hi = band(s.f / pitch_range[1], p), band(s.f / pitch_range[0], p)
    idx = np.arange(len(s))
    two = hi > lo
    bands = np.concatenate([lo, hi[two]])
    which = np.concatenate([idx, idx[two]])
    picked = Shapes(*(getattr(s, k)[which] for k in ("t", "dt", "f", "r", "lb", "lc")))
    h = hashes(picked, bands)
    order = np.argsort(which, kind="stable")
    return Hashes(h[order], which[order].astype(np.uint32))


OFFSET_CELL = 8  # frames of the clip's middle per vote cell
TIME_CELL = 0.04  # natural-log steps of the time scale per cell
PITCH_CELL = 0.03  # ... and of the pitch scale


def vote(postings: Postings, s: Shapes, time_range: tuple[float, float], pitch_range: tuple[float, float],
         top: int = 4) -> list[Found]:
    """Each hit's own time scale, pitch scale and offset, voted on in cells pooled with their neighbours;
    the best cell of each episode slot, strongest first, its scales and offset the medians of its hits.
    The offset is voted where the clip's middle falls, which a scale error moves least."""
    if postings.slot.size == 0 or len(s) == 0:
        return []
    q = postings.query_t
    t_db, dt_db, f_db = unpack_values(postings.db_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts, ps = dt_db / s.dt[q], s.f[q] / f_db
    ok = (ts >= time_range[0]) & (ts <= time_range[1]) & (ps >= pitch_range[0]) & (ps <= pitch_range[1])
    if not ok.any():
        return []
    q, t_db, ts, ps, slot = q[ok], t_db[ok], ts[ok], ps[ok], postings.slot[ok]
    middle = float(s.t.max() + s.t.min()) / 2
    mid = t_db + ts * (middle - s.t[q])
    cells = np.stack([slot, np.floor(mid / OFFSET_CELL), np.floor(np.log(ts) / TIME_CELL),
                      np.floor(np.log(ps) / PITCH_CELL)]).astype(np.int64)
    key = _cell_key(cells)
    uniq, counts = np.unique(key, return_counts=True)
    best = uniq[np.argsort(-counts, kind="stable")[: 16 * top]]
    pooled = np.zeros(best.size, np.int64)
    for d in _NEIGHBOURS:
        at = np.searchsorted(uniq, best + d)
        at = np.minimum(at, uniq.size - 1)
        pooled += np.where(uniq[at] == best + d, counts[at], 0)
    out: dict[int, Found] = {}
    for b in best[np.argsort(-pooled, kind="stable")].tolist():
        sl = b >> _SLOT_SHIFT
        if sl in out:
            continue
        near = np.isin(key, b + _NEIGHBOURS)
        t_s, p_s = float(np.exp(np.median(np.log(ts[near])))), float(np.exp(np.median(np.log(ps[near]))))
        offset = round(float(np.median(mid[near])) - t_s * middle)
        out[sl] = Found(sl, offset, int(near.sum()), Hypothesis(t_s, p_s))
        if len(out) == top:
            break
    return sorted(out.values(), key=lambda f: -f.score)


_SCALE_BITS = 8  # per scale coordinate of a cell (biased): far beyond any range's cells
_OFFSET_BITS = 18  # per offset coordinate (biased): 2**17 cells of OFFSET_CELL frames hold any episode
_SLOT_SHIFT = _OFFSET_BITS + 2 * _SCALE_BITS


def _cell_key(cells: np.ndarray) -> np.ndarray:
    return ((cells[0] << _SLOT_SHIFT) | ((cells[1] + (1 << (_OFFSET_BITS - 1))) << (2 * _SCALE_BITS))
            | ((cells[2] + (1 << (_SCALE_BITS - 1))) << _SCALE_BITS) | (cells[3] + (1 << (_SCALE_BITS - 1))))


_NEIGHBOURS = np.array([(do << (2 * _SCALE_BITS)) + (dt << _SCALE_BITS) + dp
                        for do in (-1, 0, 1) for dt in (-1, 0, 1) for dp in (-1, 0, 1)], np.int64)
