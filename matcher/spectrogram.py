"""PCM -> log-power spectrogram frames (numpy in, numpy out)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from matcher.params import FingerprintParams

SILENCE = np.float32(np.log(1e-6))  # power floor, about -100 dBFS: digital silence and dither stay below it


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1]


def n_frames(n_samples: int, p: FingerprintParams) -> int:
    """How many whole frames ``n_samples`` samples hold (frame k starts at sample k * hop)."""
    return 0 if n_samples < p.n_fft else 1 + (n_samples - p.n_fft) // p.hop


def log_spectrogram(pcm: np.ndarray, p: FingerprintParams) -> np.ndarray:
    """Frames x bins (min_bin..max_bin) of natural-log power, float32."""
    n = n_frames(pcm.size, p)
    if n == 0:
        return np.zeros((0, p.max_bin - p.min_bin), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(pcm.astype(np.float32, copy=False), p.n_fft)[:: p.hop][:n]
    # float64 on purpose: NumPy's float32 FFT takes three times as long for these sizes
    spec = np.fft.rfft(frames * _window(p.n_fft), axis=1)[:, p.min_bin : p.max_bin]
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    return np.log(np.maximum(power, np.float32(1e-13)), dtype=np.float32)
