"""Decode any audio or video FFmpeg reads into mono float32 PCM at the fingerprint rate, in memory.

Decoding runs in-process through FFmpeg's libraries (PyAV ships them): starting an ffmpeg process
costs ~100 ms, which the identify path cannot afford. Samples are yielded in chunks so a two-hour
episode never sits in memory whole.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

try:
    import av
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "CityWok decodes audio with PyAV (FFmpeg's libraries); install it with `pip install av`"
    ) from e

Source = str | os.PathLike | bytes | BinaryIO

CHUNK_SECONDS = 30.0


class DecodeError(Exception):
    """The input is not decodable audio (or video with an audio track)."""


def _open(source: Source) -> av.container.InputContainer:
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str) and not Path(source).exists():
        raise DecodeError(f"{source}: no such file")
    try:
        return av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError as e:
        raise DecodeError(f"not a readable audio or video file ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def iter_pcm(
    source: Source,
    sample_rate: int = 8000,
    chunk_seconds: float = CHUNK_SECONDS,
    max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield mono float32 chunks (about ``chunk_seconds`` each) of the first audio stream."""
    container = _open(source)
    try:
        if not container.streams.audio:
            raise DecodeError("the file has no audio track")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        target = max(1, int(chunk_seconds * sample_rate))
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        pending: list[np.ndarray] = []
        have = 0
        total = 0
        try:
            frames = container.decode(stream)
            for frame in frames:
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    have += out.samples
                if have >= target:
                    chunk = np.concatenate(pending)
                    pending, have = [], 0
                    if limit is not None and total + chunk.size >= limit:
                        yield chunk[: limit - total]
                        return
                    total += chunk.size
                    yield chunk
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            if total == 0 and not pending:
                raise DecodeError(f"not decodable as audio ({_reason(e)})") from None
            # A damaged tail: keep what decoded cleanly, like players do.
        if pending:
            chunk = np.concatenate(pending)
            if limit is not None:
                chunk = chunk[: max(0, limit - total)]
            if chunk.size:
                yield chunk
    finally:
        container.close()


def decode(source: Source, sample_rate: int = 8000, max_seconds: float | None = None) -> np.ndarray:
    """Decode a whole (short) input into one mono float32 array."""
    chunks = list(iter_pcm(source, sample_rate, max_seconds=max_seconds))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
