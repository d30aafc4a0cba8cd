"""PCM stream -> landmark hashes, block by block, with the same result as the whole file at once.

The stages are spectrogram -> peaks -> landmarks; this module only carries the overlap each stage
needs between blocks (n_fft samples, the peak neighbourhood, the landmark target zone).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from citywok.matcher.engine.landmarks import Hashes, landmarks
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.engine.peaks import Peaks, find_peaks
from citywok.matcher.engine.spectrogram import log_spectrogram, n_frames


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
        self._out: list[Hashes] = []
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
        self._advance(self._next_frame, final=True)
        out = Hashes.concat(self._out)
        self._out = []
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
            self._peaks = Peaks.concat([self._peaks, new])
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
            self._peaks = self._peaks[anchors:]


def fingerprint_pcm(pcm: np.ndarray, params: FingerprintParams = DEFAULT_PARAMS) -> Hashes:
    """Hashes of a PCM array already in memory (a query clip)."""
    fp = Fingerprinter(params)
    fp.feed(pcm)
    return fp.finish()


def fingerprint_chunks(
    chunks: Iterable[np.ndarray], params: FingerprintParams = DEFAULT_PARAMS
) -> tuple[Hashes, float]:
    """Hashes and duration (seconds) of a chunked PCM stream (an episode being ingested)."""
    fp = Fingerprinter(params)
    for c in chunks:
        fp.feed(c)
    return fp.finish(), fp.duration
