"""Deterministic synthetic "episodes" for the demo and the tests: music-like notes with a seed.

Real recordings would be better, but they cannot live in git; a seeded synthesiser gives any number
of distinct, reproducible episodes with rich spectral peaks.
"""

from __future__ import annotations

import io

import av
import numpy as np


def episode(seed: int, seconds: float, sample_rate: int = 22050) -> np.ndarray:
    """A seeded melody of decaying harmonic notes over a soft noise bed, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, np.float32)
    t_note = 0.0
    while t_note < seconds:
        dur = float(rng.uniform(0.12, 0.5))
        start = int(t_note * sample_rate)
        length = min(int(dur * 1.6 * sample_rate), n - start)
        if length <= 0:
            break
        tt = np.arange(length, dtype=np.float32) / sample_rate
        env = np.exp(-tt * rng.uniform(3, 9)).astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            f0 = float(110 * 2 ** (rng.integers(0, 36) / 12))
            for h in range(1, 5):
                if f0 * h < sample_rate / 2 - 200:
                    tone = np.sin(2 * np.pi * f0 * h * tt + rng.uniform(0, 6.28)).astype(np.float32)
                    out[start : start + length] += (0.25 / h) * env * tone
        t_note += dur
    out += 0.01 * rng.standard_normal(n).astype(np.float32)
    return (out / max(1e-6, float(np.abs(out).max())) * 0.8).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at a given signal-to-noise ratio."""
    rng = np.random.default_rng(seed)
    power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-12
    noise = rng.standard_normal(x.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch moves too), as a sped-up broadcast does."""
    n = int(x.size / factor)
    return np.interp(np.arange(n) * factor, np.arange(x.size), x).astype(np.float32)


_CODECS = {"wav": ("wav", "pcm_s16le", "s16"), "mp3": ("mp3", "libmp3lame", "fltp"),
           "opus": ("ogg", "libopus", "flt"),
           "flac": ("flac", "flac", "s16")}


def encode(x: np.ndarray, sample_rate: int, fmt: str = "wav", bitrate: int | None = None) -> bytes:
    """Encode mono float32 PCM to an audio file in memory (wav, mp3, opus, flac)."""
    container_fmt, codec, sample_fmt = _CODECS[fmt]
    rate = 48000 if fmt == "opus" else sample_rate
    if rate != sample_rate:
        x = np.interp(np.arange(int(x.size * rate / sample_rate)) * sample_rate / rate, np.arange(x.size), x)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.layout = "mono"
        if bitrate:
            s.bit_rate = bitrate
        pcm = np.clip(x, -1, 1).astype(np.float32)
        if sample_fmt == "s16":
            frame = av.AudioFrame.from_ndarray((pcm * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format=sample_fmt, layout="mono")
        frame.sample_rate = rate
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return buf.getvalue()


def _atempo_chain(factor: float) -> list[str]:
    """atempo filters whose product is ``factor`` (one atempo takes 0.5..2)."""
    out = []
    while factor > 2.0 or factor < 0.5:
        step = 2.0 if factor > 2.0 else 0.5
        out.append(f"{step}")
        factor /= step
    return out + [f"{factor:.6f}"]


def rescale(x: np.ndarray, sample_rate: int, speed: float = 1.0, tempo: float = 1.0, pitch: float = 1.0
            ) -> np.ndarray:
    """Edit a clip as uploaders do, through FFmpeg's filters: ``speed`` resamples (faster and higher
    together, asetrate + aresample), ``tempo`` changes the duration alone (atempo), ``pitch`` moves the
    frequencies alone (asetrate + aresample + atempo). The factors multiply: 1.25 is faster or higher."""
    from fractions import Fraction

    g = av.filter.Graph()
    src = g.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono", time_base=Fraction(1, sample_rate))
    chain = [src]
    rate_factor = speed * pitch
    if rate_factor != 1.0:
        chain.append(g.add("asetrate", f"{sample_rate * rate_factor:.6f}"))
        chain.append(g.add("aresample", f"{sample_rate}"))
    if tempo / pitch != 1.0:
        chain += [g.add("atempo", f) for f in _atempo_chain(tempo / pitch)]
    chain.append(g.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={sample_rate}"))
    chain.append(g.add("abuffersink"))
    g.link_nodes(*chain).configure()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    src.push(frame)
    src.push(None)
    out = []
    while True:
        try:
            out.append(g.pull().to_ndarray().reshape(-1))
        except (av.BlockingIOError, av.EOFError):
            break
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
