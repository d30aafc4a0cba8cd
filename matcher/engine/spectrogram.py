"""PCM -> log-power spectrogram frames (numpy in, numpy out)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from citywok.matcher.engine.params import FingerprintParams

SILENCE = np.float32(np.log(1e-6))  # power floor, about -100 dBFS: digital silence and dither stay below it


@lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    return np.hanning(n_fft + 1)[:-1]


def n_frames(n_samples: int, p: FingerprintParams) -> int:
    """How many whole frames ``n_samples`` samples hold (frame k starts at sample k * hop)."""
    return 0 if n_samples < p.n_fft else 1 + (n_samples - p.n_fft) // p.hop


ROWS = 64  # frames transformed at a time: the temporaries of a block stay in the CPU cache


def log_spectrogram(pcm: np.ndarray, p: FingerprintParams) -> np.ndarray:
    """Frames x bins (min_bin..max_bin) of natural-log power, float32."""
    n = n_frames(pcm.size, p)
    out = np.empty((n, p.max_bin - p.min_bin), dtype=np.float32)
    if n == 0:
        return out
    frames = np.lib.stride_tricks.sliding_window_view(pcm.astype(np.float32, copy=False), p.n_fft)[:: p.hop][:n]
    window = _window(p.n_fft)
    for start in range(0, n, ROWS):
        block = frames[start : start + ROWS]
        # float64 on purpose: NumPy's float32 FFT takes three times as long for these sizes
        spec = np.fft.rfft(block * window, axis=1)[:, p.min_bin : p.max_bin]
        parts = spec.view(np.float64).reshape(block.shape[0], -1, 2).astype(np.float32)  # real, imaginary
        parts *= parts
        power = out[start : start + ROWS]
        np.add(parts[..., 0], parts[..., 1], out=power)
        np.maximum(power, np.float32(1e-13), out=power)
        np.log(power, out=power)
    return out
