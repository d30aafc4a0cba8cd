"""Decode any audio or video FFmpeg reads into mono float32 PCM at the fingerprint rate, in memory.

Decoding runs in-process through FFmpeg's libraries (PyAV ships them): starting an ffmpeg process
costs ~100 ms, which the identify path cannot afford. Samples are yielded in chunks so a two-hour
episode never sits in memory whole.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from fractions import Fraction
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
    # A small probe is enough to find an audio stream in most files and saves ~10 ms on WAV; a file
    # that needs more (an MP4 with its index at the end, say) is opened again with FFmpeg's defaults.
    for options in (FAST_PROBE, {}):
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            container = av.open(source, mode="r", metadata_errors="ignore", options=options)
        except av.FFmpegError as e:
            if options:
                continue
            raise DecodeError(f"not a readable audio or video file ({_reason(e)})") from None
        if container.streams.audio or not options:
            return container
        container.close()
    raise AssertionError("unreachable")


FAST_PROBE = {"probesize": "8192"}
FORMAT_DTYPES = av.audio.frame.format_dtypes  # sample format name -> numpy dtype


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _samples(frames: list[av.AudioFrame]) -> np.ndarray:
    """Channels x samples of frames of one format, read straight from their planes (``to_ndarray`` per
    frame costs more than decoding it, for the ~40 small frames a second of compressed audio makes)."""
    first = frames[0]
    dtype = np.dtype(FORMAT_DTYPES[first.format.name]).newbyteorder("=")
    channels = len(first.layout.channels)
    if first.format.is_planar:
        return np.stack([np.concatenate([np.frombuffer(f.planes[c], dtype, count=f.samples) for f in frames])
                         for c in range(channels)])
    packed = np.concatenate([np.frombuffer(f.planes[0], dtype, count=f.samples * channels) for f in frames])
    return packed.reshape(1, -1)


def _batch(frames: list[av.AudioFrame]) -> av.AudioFrame:
    """Join decoded frames of one format into one frame: resampling a few large frames is much
    cheaper than resampling hundreds of small ones."""
    if len(frames) == 1:
        return frames[0]
    first = frames[0]
    out = av.AudioFrame.from_ndarray(_samples(frames), format=first.format.name, layout=first.layout.name)
    out.sample_rate = first.sample_rate
    return out


class _Downsampler:
    """Mono float32 at ``rate`` through an FFmpeg filter graph: downmix first, then a short
    resampling filter. About twice as fast as a default resampler, and fingerprints need no more."""

    def __init__(self, frame: av.AudioFrame, rate: int) -> None:
        self.key = (frame.format.name, frame.layout.name, frame.sample_rate)
        g = av.filter.Graph()
        src = g.add_abuffer(format=frame.format.name, sample_rate=frame.sample_rate, layout=frame.layout.name,
                            time_base=Fraction(1, frame.sample_rate))
        mono = g.add("aformat", "sample_fmts=flt:channel_layouts=mono")
        resample = g.add("aresample", f"{rate}:filter_size=16:phase_shift=8:linear_interp=1")
        out = g.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={rate}")
        sink = g.add("abuffersink")
        g.link_nodes(src, mono, resample, out, sink).configure()
        self.graph = g

    def push(self, frame: av.AudioFrame | None) -> list[np.ndarray]:
        if frame is not None:
            frame.pts = None
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull().to_ndarray().reshape(-1))
            except (av.BlockingIOError, av.EOFError):
                return out


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
        resampler: _Downsampler | None = None
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        total = 0
        pending: list[av.AudioFrame] = []
        pending_key: tuple[str, str, int] | None = None  # the format of the frames pending
        pending_samples = 0

        def flush(final: bool) -> np.ndarray | None:
            nonlocal pending, pending_samples, resampler
            parts: list[np.ndarray] = []
            if pending:
                batch = _batch(pending)
                key = (batch.format.name, batch.layout.name, batch.sample_rate)
                if resampler is not None and resampler.key != key:
                    parts += resampler.push(None)
                    resampler = None
                if key[0] in ("flt", "fltp") and key[1:] == ("mono", sample_rate):
                    parts.append(batch.to_ndarray().reshape(-1))  # already what fingerprints need
                else:
                    resampler = resampler or _Downsampler(batch, sample_rate)
                    parts += resampler.push(batch)
            if final and resampler is not None:
                parts += resampler.push(None)
            pending, pending_samples = [], 0
            return np.concatenate(parts) if parts else None

        def emit(chunk: np.ndarray | None) -> Iterator[np.ndarray]:
            nonlocal total
            if chunk is None or chunk.size == 0:
                return
            if limit is not None:
                chunk = chunk[: max(0, limit - total)]
            total += chunk.size
            if chunk.size:
                yield chunk

        try:
            for frame in container.decode(stream):
                key = (frame.format.name, frame.layout.name, frame.sample_rate)
                if key != pending_key:
                    if pending:
                        yield from emit(flush(False))
                    pending_key = key
                pending.append(frame)
                pending_samples += frame.samples
                if pending_samples >= chunk_seconds * key[2]:
                    yield from emit(flush(False))
                    if limit is not None and total >= limit:
                        return
        except av.FFmpegError as e:
            if total == 0 and not pending:
                raise DecodeError(f"not decodable as audio ({_reason(e)})") from None
            # A damaged tail: keep what decoded cleanly, as players do.
        yield from emit(flush(True))
    finally:
        container.close()


def decode(source: Source, sample_rate: int = 8000, max_seconds: float | None = None) -> np.ndarray:
    """Decode a whole (short) input into one mono float32 array."""
    chunks = list(iter_pcm(source, sample_rate, max_seconds=max_seconds))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
