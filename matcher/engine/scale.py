"""Scale hypotheses applied to a clip's peaks: finding clips that were sped up, slowed down,
time-stretched or pitch-shifted, against the index built for unedited audio (numpy in, numpy out).

A clip played ``time_scale`` times faster than the episode with its frequencies ``pitch_scale`` times
higher has its peaks at (t / time_scale, f * pitch_scale). Its peaks are found once, moved back to the
episode's time and frequency under each hypothesis, thinned to the episode's density and paired into
landmarks again: under the right hypothesis they are the episode's own hashes. Speed (resampling)
moves both factors together, tempo only the times, pitch only the frequencies, so the coarse search
walks those three lines first; a clip they explain nothing of is searched on the plane of pairs off
them (a tempo or speed change with a pitch shift on top), every pitch at a wider time step. The best
candidates are refined around their hypothesis and re-voted before anything is answered. The peaks
are placed between frames and bins first (:func:`fine_peaks`): a hash holds its bins and time
difference exactly, and a moved peak must round to the episode's own.

A hypothesis tolerates much less error in frequency than in time: a pair's dt is short and the vote
pools a few frames of drift, while a peak at bin f moves by f times the error, and music pairs peaks
up to 4 kHz, where a third of a percent is half a bin. So pitches (and speeds, which move pitch) step
0.75% apart, times 3%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes, pack_hash, top_pairs
from citywok.matcher.engine.match import Votes, vote
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.peaks import Peaks, find_peaks, thinned
from citywok.matcher.engine.spectrogram import log_spectrogram

T_BITS = 12  # clip frames under a hypothesis: 30 s at 1.3x is 2,440 frames; the hypothesis goes above


@dataclass(frozen=True)
class Hypothesis:
    time_scale: float  # the clip plays this many times faster than the episode
    pitch_scale: float  # the clip's frequencies are this many times the episode's


@dataclass(frozen=True)
class ScaleGrid:
    """The coarse hypotheses: the speed, tempo and pitch lines, in geometric steps."""

    time_range: tuple[float, float] = (0.78, 1.28)
    pitch_range: tuple[float, float] = (0.83, 1.21)
    time_step: float = 0.03
    pitch_step: float = 0.0075
    coarse_fanout: int = 3  # pairs per anchor in the plane's coarse search: the strongest survive an edit best
    coarse_dt_max: int = 31  # frames: short pairs stay hashed right under a slightly wrong time scale
    plane_time_step: float = 0.06  # off the lines: every pitch step at time scales this far apart (pooled
    # offsets and pairs of at most coarse_dt_max frames still line up half a step off; refinement takes it on)
    plane_table_bits: int = 20  # the plane's coarse vote in at most 2**this cells: its hits are many times a
    # line's, a table sized to them costs more than their lookup, and a true alignment's still pile up in one
    coarse_pairs: float = 9.0  # pairs per anchor-second of clip the coarse searches make at most (for_clip)
    refine_fanout: int = 3  # a refinement's local grid pairs as the lines do: it only picks the hypothesis,
    refine_dt_max: int = 47  # and verification votes every hash of the clip at it
    line_fanout: int = 3  # on the lines, pairs per anchor up to line_dt_max frames: a line holds few hypotheses,
    line_dt_max: int = 47  # and a clip under music keeps too few of its strongest short pairs

    def lines(self) -> list[list[Hypothesis]]:
        """The pitch line, then speed, then tempo (the order they are searched in: the pitch line is paired
        once for all its hypotheses, the cheapest, and a clip it explains nothing of costs little more),
        unscaled (1, 1) left out: the plain vote has tried it. The speed line steps as the pitch line does: a
        resampled clip's frequencies move with its time, and frequency tolerates less error."""
        speeds = _geometric(*self.time_range, self.pitch_step)
        tempos = _geometric(*self.time_range, self.time_step)
        pitches = _geometric(*self.pitch_range, self.pitch_step)
        lines = [[Hypothesis(1.0, s) for s in pitches], [Hypothesis(s, s) for s in speeds],
                 [Hypothesis(s, 1.0) for s in tempos]]
        return [[h for h in line if abs(h.time_scale - 1) > 1e-9 or abs(h.pitch_scale - 1) > 1e-9] for line in lines]

    def plane(self) -> tuple[list[float], list[float]]:
        """Time and pitch scaled apart (a tempo change with a pitch shift on top): time scales
        ``plane_time_step`` apart and pitches ``pitch_step`` apart, inside the ranges, pitch 1 left out (the
        tempo line has tried it). The hypotheses are every pair, pitches innermost; time scale 1 is there
        again, refined further than the pitch line's are."""
        times = _inside(*self.time_range, self.plane_time_step)
        return times, [s for s in _inside(*self.pitch_range, self.pitch_step) if abs(s - 1) > 1e-9]

    def for_clip(self, seconds: float) -> ScaleGrid:
        """The grid for a clip this long: its coarse searches pair at most ``coarse_pairs`` per anchor-second
        of clip (the fan-outs above, down to one, for a longer clip). Their cost grows with the clip's
        hashes, and a long clip holds the evidence a short one gathers with more pairs per anchor."""
        def capped(fanout: int) -> int:
            return max(1, min(fanout, math.floor(self.coarse_pairs / max(seconds, 1e-9) + 0.5)))
        return replace(self, line_fanout=capped(self.line_fanout), coarse_fanout=capped(self.coarse_fanout))

    def hypotheses(self) -> list[Hypothesis]:
        return [h for line in self.lines() for h in line]

    def around(self, h: Hypothesis, reach: int = 1) -> list[Hypothesis]:
        """The local grid a coarse winner is refined on: half a step either side in pitch, ``reach`` half
        steps either side in time."""
        ts = [h.time_scale * (1 + k * self.time_step / 2) for k in range(-reach, reach + 1)]
        ps = [h.pitch_scale * (1 + k * self.pitch_step / 2) for k in (-1, 0, 1)]
        return [Hypothesis(t, p) for t in ts for p in ps]


def _geometric(lo: float, hi: float, step: float) -> list[float]:
    """Points from ``lo`` to ``hi`` a factor ``1 + step`` apart, one of them exactly 1."""
    k_lo = math.floor(math.log(lo) / math.log1p(step))
    k_hi = math.ceil(math.log(hi) / math.log1p(step))
    return [(1 + step) ** k for k in range(k_lo, k_hi + 1)]


def _inside(lo: float, hi: float, step: float) -> list[float]:
    """Points from ``lo`` to ``hi`` a factor ``1 + step`` apart, one of them exactly 1, none outside."""
    k_lo = math.ceil(math.log(lo) / math.log1p(step))
    k_hi = math.floor(math.log(hi) / math.log1p(step))
    return [(1 + step) ** k for k in range(k_lo, k_hi + 1)]


def clip_peaks(spec: np.ndarray, p: FingerprintParams, per_bucket: int) -> Peaks:
    """The clip's peaks at a higher density than the index keeps: a sped-up clip packs more than a
    bucket of the episode's time into each of its own buckets, and thinning comes after the move."""
    dense = FingerprintParams(**{**p.to_dict(), "peaks_per_bucket": per_bucket})
    return find_peaks(spec, 0, 0, spec.shape[0], dense)


def clip_spectrogram(pcm: np.ndarray, p: FingerprintParams) -> np.ndarray:
    return log_spectrogram(pcm, p)


def scaled_peaks(peaks: Peaks, hyps: list[Hypothesis], p: FingerprintParams) -> Peaks:
    """The clip's peaks moved to the episode's time and frequency under each hypothesis, thinned as the
    episode's were (the strongest ``peaks_per_bucket`` of each bucket). Hypothesis k's peaks come
    ``k << T_BITS`` frames after hypothesis k-1's, so one pairing pass serves them all."""
    ts = np.array([h.time_scale for h in hyps])[:, None]
    ps = np.array([h.pitch_scale for h in hyps])[:, None]
    t = np.rint(peaks.t[None, :] * ts).astype(np.int64) + (np.arange(len(hyps))[:, None] << T_BITS)
    f = np.rint(peaks.f[None, :] / ps).astype(np.int64)
    m = np.broadcast_to(peaks.m[None, :], t.shape)
    ok = (f >= p.min_bin) & (f < p.max_bin)
    t, f, m = t[ok], f[ok], m[ok]
    final = thinned(t, f, m, p)
    return Peaks(t[final], f[final], m[final])


def top_landmarks(peaks: Peaks, p: FingerprintParams, fanout: int, dt_max: int) -> Hashes:
    """:func:`landmarks` with the strongest ``fanout`` pairs of a zone cut at ``dt_max`` frames, picked
    by repeated maxima (a full sort of every zone costs more than the lookups). Short pairs are the
    ones a slightly wrong time scale still hashes right."""
    if len(peaks) < 2:
        return Hashes.empty()
    i, k = top_pairs(peaks, p, fanout, dt_max)
    t, f = peaks.t, peaks.f
    return Hashes(pack_hash(f[i], f[k] - f[i], t[k] - t[i]), t[i].astype(np.uint32))


def batch_hashes(peaks: Peaks, hyps: list[Hypothesis], p: FingerprintParams, fanout: int | None = None,
                 dt_max: int | None = None) -> Hashes:
    """The hashes of every hypothesis in one query (one lookup for all): hypothesis k's anchor times
    carry ``k`` above ``T_BITS``."""
    moved = scaled_peaks(peaks, hyps, p)
    return top_landmarks(moved, p, p.fanout if fanout is None else fanout,
                         p.target_dt_max if dt_max is None else dt_max)


@dataclass(frozen=True)
class Found:
    """The best alignment of one episode slot under the hypotheses."""

    slot: int
    offset: int  # frames of the episode where the clip starts
    score: int
    hypothesis: Hypothesis


TABLE_MIN_BITS = 12  # cells of the coarse vote: (hypothesis, slot) hashed, offset bins kept adjacent, at least
CELLS_PER_HIT = 4  # ... and this many per hit: stray collisions stay rare, and the table costs what the hits do
OFFSET_BIN = 4  # frames per coarse offset bin; with its neighbours the vote spans 12 frames of drift


def table_size(hits: int) -> int:
    """Cells of the coarse vote for ``hits`` hits: a power of two, about ``CELLS_PER_HIT`` per hit."""
    return 1 << max(TABLE_MIN_BITS, int(hits * CELLS_PER_HIT - 1).bit_length())


def vote_hypotheses(postings: Postings, hyps: list[Hypothesis], top: int = 8, cells: int = 48,
                    max_bits: int | None = None) -> list[Found]:
    """The best alignment of each slot over (hypothesis, slot, offset), strongest first.

    A coarse vote first counts every hit in a hashed table of offset bins (linear time: sorting every
    hit of every hypothesis costs several times the lookups); the hits of the best ``cells`` are then
    voted exactly, each hypothesis at a few nearby time scales, since under a slightly wrong one the
    offset drifts along the clip."""
    if postings.slot.size == 0:
        return []
    size = table_size(postings.slot.size) if max_bits is None else min(table_size(postings.slot.size), 1 << max_bits)
    k = postings.query_t >> T_BITS
    n_slots = int(postings.slot.max()) + 1
    group = k * n_slots + postings.slot
    cell = ((group * 0x9E3779B1) + (postings.offset >> 2)) & (size - 1)
    counts = np.bincount(cell, minlength=size)
    pooled = counts.copy()
    pooled[1:] += counts[:-1]
    pooled[:-1] += counts[1:]
    strong = np.flatnonzero(pooled >= max(2, int(pooled.max()) // 3))
    strong = strong[np.argsort(-pooled[strong], kind="stable")[:cells]]
    near = np.zeros(size + 1, bool)
    near[strong] = True
    near[strong + 1] = True
    near[np.maximum(strong - 1, 0)] = True
    picked = near[cell]
    return _exact_vote(postings, picked, group[picked], n_slots, hyps, top)


def _exact_vote(postings: Postings, picked: np.ndarray, group: np.ndarray, n_slots: int,
                hyps: list[Hypothesis], top: int, subs: tuple[float, ...] = (-0.006, 0.0, 0.006)) -> list[Found]:
    t = postings.query_t[picked] & ((1 << T_BITS) - 1)
    db = postings.db_t[picked]
    keys = np.concatenate([group * len(subs) + j for j in range(len(subs))])
    qts = np.concatenate([t if d == 0 else np.rint(t * (1 + d)).astype(np.int64) for d in subs])
    v: Votes = vote(Postings(qts, keys, np.tile(db, len(subs)), 0), top=64)
    out: dict[int, Found] = {}
    for key, off, score in zip(v.slot.tolist(), v.offset.tolist(), v.score.tolist(), strict=True):
        g, j = divmod(key, len(subs))
        hk, slot = divmod(g, n_slots)
        if slot not in out:
            h = hyps[hk]
            out[slot] = Found(slot, off, score, Hypothesis(h.time_scale * (1 + subs[j]), h.pitch_scale))
    return sorted(out.values(), key=lambda f: -f.score)[:top]


def stands_out(found: list[Found], floor: int, ratio: float) -> bool:
    """Whether the best alignment of a coarse vote (strongest first) reaches ``floor`` and ``ratio`` times
    the next slot's: chance alignments under the wrong hypotheses come in crowds of equals."""
    if not found or found[0].score < floor:
        return False
    return len(found) < 2 or found[0].score >= ratio * found[1].score


def slot_postings(postings: Postings, slot: int) -> Postings:
    """The hits of one slot: a refinement votes on its candidate only."""
    m = postings.slot == slot
    return Postings(postings.query_t[m], postings.slot[m], postings.db_t[m], postings.looked_up)


def hypothesis_postings(postings: Postings, k: int) -> Postings:
    """The hits of hypothesis ``k`` of a batched lookup, with the clip times of that hypothesis."""
    m = (postings.query_t >> T_BITS) == k
    return Postings(postings.query_t[m] & ((1 << T_BITS) - 1), postings.slot[m], postings.db_t[m], 0)


def plain_peaks(peaks: Peaks, p: FingerprintParams) -> Peaks:
    """Dense clip peaks thinned to the index's density, unmoved: what the clip's own hashes pair."""
    return scaled_peaks(peaks, [Hypothesis(1.0, 1.0)], p)


def line_hashes(peaks: Peaks, p: FingerprintParams, grid: ScaleGrid, hyps: list[Hypothesis]) -> Hashes:
    """The coarse search's hashes of hypotheses ``hyps`` (a line), batched for one lookup. Hypotheses of one
    time scale (the pitch line) are paired once (:func:`moved_pairs`)."""
    times = sorted({h.time_scale for h in hyps})
    if len(times) == 1:
        return moved_pairs(peaks, p, times, [h.pitch_scale for h in hyps], grid.line_fanout, grid.line_dt_max)
    return batch_hashes(peaks, hyps, p, grid.line_fanout, grid.line_dt_max)


def plane_hashes(peaks: Peaks, p: FingerprintParams, grid: ScaleGrid) -> tuple[Hashes, list[Hypothesis]]:
    """The short pairs of every hypothesis of the plane (:func:`moved_pairs`), and the hypotheses."""
    times, pitches = grid.plane()
    hyps = [Hypothesis(t, s) for t in times for s in pitches]
    return moved_pairs(peaks, p, times, pitches, grid.coarse_fanout, grid.coarse_dt_max), hyps


def moved_pairs(peaks: Peaks, p: FingerprintParams, times: list[float], pitches: list[float], fanout: int,
                dt_max: int) -> Hashes:
    """The pairs of every (time scale, pitch) hypothesis, pitches innermost, batched as :func:`batch_hashes`
    does. The peaks are moved, thinned and paired once per time scale; each pitch then moves the pairs'
    (fractional) frequencies only (pairing is most of the cost, and a pitch change keeps which peaks are
    the strongest nearby)."""
    per_pitch = 1 / np.array(pitches)[:, None]
    band = (np.rint(peaks.f) >= p.min_bin) & (np.rint(peaks.f) < p.max_bin)
    hashes, at = [], []
    for a, time_scale in enumerate(times):
        t, f, m = np.rint(peaks.t[band] * time_scale).astype(np.int64), peaks.f[band], peaks.m[band]
        keep = thinned(t, f, m, p)
        if keep.size < 2:
            continue
        t, f = t[keep], f[keep]
        i, k = top_pairs(Peaks(t, np.rint(f).astype(np.int64), m[keep]), p, fanout, dt_max)
        f1, f2 = np.rint(f[i] * per_pitch).astype(np.int64), np.rint(f[k] * per_pitch).astype(np.int64)
        df = f2 - f1
        ok = ((np.minimum(f1, f2) >= p.min_bin) & (np.maximum(f1, f2) < p.max_bin)
              & (np.abs(df) >= p.target_df_min) & (np.abs(df) <= p.target_df_max))
        dt = np.broadcast_to(t[k] - t[i], ok.shape)
        hyp = (a * len(pitches) + np.arange(len(pitches)))[:, None] << T_BITS
        hashes.append(pack_hash(f1[ok], df[ok], dt[ok]))
        at.append((t[i][None, :] + hyp)[ok])
    if not hashes:
        return Hashes.empty()
    return Hashes(np.concatenate(hashes), np.concatenate(at).astype(np.uint32))
