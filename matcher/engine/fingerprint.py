"""PCM stream -> landmark hashes and triplets, block by block, with the same result as the whole file at
once.

The stages are spectrogram -> peaks -> landmarks (and triplets, matcher/engine/triplets.py); this module
only carries the overlap each stage needs between blocks (n_fft samples, the peak neighbourhood, the
landmark target zone).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from citywok.matcher.engine import triplets
from citywok.matcher.engine.landmarks import Hashes, landmarks
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.engine.peaks import Peaks, find_peaks, fine_peaks
from citywok.matcher.engine.spectrogram import log_spectrogram, n_frames
from citywok.matcher.engine.triplets import Triplets


class Fingerprinter:
    """Feed PCM chunks, collect hashes. Memory stays bounded by the block size, not the file length."""

    def __init__(self, params: FingerprintParams = DEFAULT_PARAMS, block_buckets: int = 32) -> None:
        # 32 buckets (16 s) is less than a decoded chunk (30 s): each chunk fed is taken to peaks at
        # once and the buffers stay small (about 10% less CPU than 64 buckets); any size gives the same hashes
        self.p = params
        self.block = block_buckets * params.bucket_frames
        self._samples = np.zeros(0, np.float32)  # not yet framed; starts at frame self._next_frame
        self._next_frame = 0
        self._spec = np.zeros((0, params.max_bin - params.min_bin), np.float32)
        self._spec_start = 0  # absolute frame of self._spec row 0
        self._peaks_done = 0  # peaks are final for frames < this (a bucket boundary)
        self._peaks = Peaks.empty()  # final peaks whose landmarks are not all emitted yet
        self._fine = Peaks.empty()  # the same peaks at fractional frames and bins
        self._strong = np.zeros(0, bool)  # which of them triplets are made of
        self._out: list[Hashes] = []
        self._triplets: list[Triplets] = []
        self.triplets = Triplets.empty()  # after finish(): the stream's triplets
        self.samples_seen = 0

    def feed(self, pcm: np.ndarray) -> None:
        self.samples_seen += pcm.size
        buf = np.concatenate([self._samples, pcm.astype(np.float32, copy=False)])
        n = n_frames(buf.size, self.p)
        if n:
            spec = log_spectrogram(buf[: (n - 1) * self.p.hop + self.p.n_fft], self.p)
            self._spec = np.concatenate([self._spec, spec])
            self._next_frame += n
            buf = buf[n * self.p.hop :]
        self._samples = buf
        ready = self._next_frame - self.p.peak_time_radius
        ready -= ready % self.p.bucket_frames
        if ready - self._peaks_done >= self.block:
            self._advance(ready, final=False)

    def finish(self) -> Hashes:
        """The stream's hashes (and, in ``triplets``, its triplets)."""
        self._advance(self._next_frame, final=True)
        out = Hashes.concat(self._out)
        self.triplets = Triplets.concat(self._triplets)
        self._out, self._triplets = [], []
        return out

    @property
    def duration(self) -> float:
        return self.samples_seen / self.p.sample_rate

    def _advance(self, upto: int, final: bool) -> None:
        p = self.p
        lo = self._peaks_done - self._spec_start
        hi = upto - self._spec_start
        if hi > lo:
            new = find_peaks(self._spec, self._spec_start, lo, hi, p)
            fine = fine_peaks(self._spec, Peaks(new.t - self._spec_start, new.f, new.m), p)
            self._peaks = Peaks.concat([self._peaks, new])
            self._fine = Peaks.concat([self._fine, Peaks(fine.t + self._spec_start, fine.f, fine.m)])
            self._strong = np.concatenate([self._strong, triplets.strongest(new, p)])
            self._peaks_done = upto
            keep_from = max(0, upto - p.peak_time_radius - self._spec_start)
            self._spec = self._spec[keep_from:]
            self._spec_start += keep_from
        # anchors whose whole target zone is final can be hashed now
        if final:
            anchors = len(self._peaks)
        else:
            anchors = int(np.searchsorted(self._peaks.t, self._peaks_done - p.target_dt_max, side="left"))
        if anchors:
            self._out.append(landmarks(self._peaks, p, anchors))
            self._triplets.append(self._triplets_of(anchors))
            self._peaks, self._fine, self._strong = self._peaks[anchors:], self._fine[anchors:], self._strong[anchors:]

    def _triplets_of(self, anchors: int) -> Triplets:
        """The triplets anchored at the first ``anchors`` peaks."""
        pick = np.flatnonzero(self._strong)
        peaks, fine = (Peaks(x.t[pick], x.f[pick], x.m[pick]) for x in (self._peaks, self._fine))
        shapes = triplets.shapes(peaks, fine, self.p, int(np.count_nonzero(self._strong[:anchors])))
        return triplets.index_triplets(shapes, self.p)


def fingerprint_pcm(pcm: np.ndarray, params: FingerprintParams = DEFAULT_PARAMS) -> Hashes:
    """Hashes of a PCM array already in memory (an episode made in memory, as tests and benchmarks do)."""
    fp = Fingerprinter(params)
    fp.feed(pcm)
    return fp.finish()


def fingerprint_episode(
    chunks: Iterable[np.ndarray], params: FingerprintParams = DEFAULT_PARAMS
) -> tuple[Hashes, Triplets, float]:
    """Hashes, triplets and duration (seconds) of a chunked PCM stream (an episode being ingested)."""
    fp = Fingerprinter(params)
    for c in chunks:
        fp.feed(c)
    hashes = fp.finish()
    return hashes, fp.triplets, fp.duration
