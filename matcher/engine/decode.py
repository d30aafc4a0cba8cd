"""Decode any audio or video FFmpeg reads into mono float32 PCM at the fingerprint rate, in memory.

Decoding runs in-process through FFmpeg's libraries (PyAV ships them): starting an ffmpeg process
costs ~100 ms, which the identify path cannot afford. Samples are yielded in chunks so a two-hour
episode never sits in memory whole.
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from citywok.errors import CityWokError

try:
    import av
except ImportError as e:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "CityWok decodes audio with PyAV (FFmpeg's libraries); install it with `pip install av`"
    ) from e

Source = str | os.PathLike | bytes | BinaryIO

CHUNK_SECONDS = 30.0


class DecodeError(CityWokError):
    """The input is not decodable audio (or video with an audio track)."""

    status = 415
    code = "unsupported_media"

    @property
    def message(self) -> str:
        return f"the clip is not decodable as audio: {self}"


class NoAudioTrack(DecodeError):
    """A readable file with no audio in it (a silent video)."""

    code = "no_audio"

    @property
    def message(self) -> str:
        return f"{self}: nothing to identify"


# The demuxers an upload may be read by: containers of real audio and video. Left out on purpose are
# those that make FFmpeg open something else: sdp and rtp/rtsp (sockets), hls and dash (playlists of
# URLs), concat/ffconcat (files on the server's disk), image2 (file patterns), and every other
# format that names further inputs; and no nested protocol is allowed at all (PROTOCOLS).
CONTAINERS = ("mp3", "ogg", "flac", "wav", "w64", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "aac", "ac3", "eac3",
              "asf", "avi", "mpegts", "mpeg", "aiff", "au", "caf", "amr", "amrnb", "amrwb", "flv", "wv", "ape",
              "tta", "dts", "truehd", "mlp", "nut", "loas", "mpc", "mpc8", "voc", "rm", "gsm", "xwma", "dsf")
FORMAT_WHITELIST = ",".join(CONTAINERS)
PROTOCOLS = {"path": "file", "memory": "none"}  # a path is read by FFmpeg's file protocol, bytes by PyAV


def _open(source: Source, time_limit: float | None = None) -> av.container.InputContainer:
    if isinstance(source, bytes | bytearray | memoryview):
        source = io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str) and not Path(source).is_file():
        raise DecodeError(f"{source}: no such file")
    guard = {"format_whitelist": FORMAT_WHITELIST,
             "protocol_whitelist": PROTOCOLS["path" if isinstance(source, str) else "memory"]}
    timeout = None if time_limit is None else (time_limit, time_limit)
    # A small probe is enough to find an audio stream in most files and saves ~10 ms on WAV; a file
    # that needs more (an MP4 with its index at the end, say) is opened again with FFmpeg's defaults.
    for options in (FAST_PROBE, {}):
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            container = av.open(source, mode="r", metadata_errors="ignore", options={**guard, **options},
                                timeout=timeout)
        except av.FFmpegError as e:
            if options:
                continue
            if getattr(e, "errno", None) == errno.EINVAL:
                raise DecodeError("not a supported audio or video container (playlists, stream descriptions "
                                  "and concat lists are refused)") from None
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


class _Downsampler:
    """Mono float32 at ``rate`` through an FFmpeg filter graph: downmix first, then a short
    resampling filter. About twice as fast as a default resampler, and fingerprints need no more.

    Decoded frames go in one at a time (a C call each) and come out joined into frames of ``piece``
    samples: joining the small frames in Python, or reading as many small frames out, cost more than
    the resampling does."""

    def __init__(self, frame: av.AudioFrame, rate: int, piece: int) -> None:
        g = av.filter.Graph()
        self.src = g.add_abuffer(format=frame.format.name, sample_rate=frame.sample_rate,
                                 layout=frame.layout.name, time_base=Fraction(1, frame.sample_rate))
        mono = g.add("aformat", "sample_fmts=flt:channel_layouts=mono")
        resample = g.add("aresample", f"{rate}:filter_size=16:phase_shift=8:linear_interp=1")
        out = g.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={rate}")
        self.sink = g.add("abuffersink")
        g.link_nodes(self.src, mono, resample, out, self.sink).configure()
        g.set_audio_frame_size(piece)
        self.graph = g

    def push(self, frame: av.AudioFrame | None) -> None:
        """One decoded frame in; None ends the stream."""
        if frame is not None:
            frame.pts = None
        self.src.push(frame)

    def pull(self) -> list[np.ndarray]:
        """The whole pieces ready (and, once the stream ended, the last part piece)."""
        out = []
        while True:
            try:
                out.append(self.sink.pull().to_ndarray().reshape(-1))
            except (av.BlockingIOError, av.EOFError):
                return out


def _native(key: tuple[str, str, int], rate: int) -> bool:
    """Frames of this (format, layout, rate) are already what fingerprints need."""
    return key[0] in ("flt", "fltp") and key[1:] == ("mono", rate)


def _until_damaged(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    """Decoded frames up to the first decoding error: a damaged tail is dropped, as players do; a
    file that fails before its first frame is not audio."""
    decoded = False
    try:
        for frame in frames:
            decoded = True
            yield frame
    except av.FFmpegError as e:
        if not decoded:
            raise DecodeError(f"not decodable as audio ({_reason(e)})") from None


def _pieces(frames: Iterator[av.AudioFrame], rate: int, piece: int) -> Iterator[np.ndarray]:
    """Mono float32 samples at ``rate`` of decoded frames, in arrays of about ``piece`` samples."""
    key: tuple[str, str, int] | None = None  # the format of the frames coming in
    resampler: _Downsampler | None = None
    native: list[av.AudioFrame] = []  # frames taken as they are, not yet handed out
    pending = 0  # samples in since the last pieces went out

    def flush() -> Iterator[np.ndarray]:
        if native:
            yield _samples(native).reshape(-1)
        if resampler is not None:
            resampler.push(None)
            yield from resampler.pull()

    for frame in frames:
        k = (frame.format.name, frame.layout.name, frame.sample_rate)
        if k != key:  # a new format: what the old one holds goes out first
            yield from flush()
            key, native, pending = k, [], 0
            resampler = None if _native(k, rate) else _Downsampler(frame, rate, piece)
        pending += frame.samples
        if resampler is None:
            native.append(frame)
            if pending >= piece:
                yield _samples(native).reshape(-1)
                native, pending = [], 0
        else:
            resampler.push(frame)
            if pending * rate >= piece * k[2]:
                yield from resampler.pull()
                pending = 0
    yield from flush()


PIECES_PER_CHUNK = 8  # a max_seconds cut decodes at most about a piece past the cut


def iter_pcm(
    source: Source,
    sample_rate: int = 8000,
    chunk_seconds: float = CHUNK_SECONDS,
    max_seconds: float | None = None,
    time_limit: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield mono float32 chunks (about ``chunk_seconds`` each) of the first audio stream.

    ``time_limit``: seconds of wall time the whole decode may take (an upload built to decode slowly
    or to block is a DecodeError, not a worker held); FFmpeg's own waits are interrupted at it too.
    """
    deadline = None if time_limit is None else time.monotonic() + time_limit
    container = _open(source, time_limit)
    try:
        if not container.streams.audio:
            raise NoAudioTrack("the file has no audio track")
        yield from _chunks(container, sample_rate, chunk_seconds, max_seconds, deadline)
    except (av.FFmpegError, ValueError, KeyError, OverflowError) as e:
        # a stream FFmpeg opens but cannot convert: 255 channels, an absurd sample rate
        raise DecodeError(f"not decodable as audio ({_reason(e)})") from None
    finally:
        container.close()


def _chunks(container: av.container.InputContainer, sample_rate: int, chunk_seconds: float,
            max_seconds: float | None, deadline: float | None) -> Iterator[np.ndarray]:
    stream = container.streams.audio[0]
    stream.thread_type = "AUTO"
    chunk = max(1, int(chunk_seconds * sample_rate))
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    parts: list[np.ndarray] = []
    held = total = 0
    for piece in _pieces(_until_damaged(container.decode(stream)), sample_rate,
                         max(1, chunk // PIECES_PER_CHUNK)):
        if deadline is not None and time.monotonic() > deadline:
            raise DecodeError("decoding took longer than the time limit")
        if limit is not None:
            piece = piece[: limit - total - held]
        parts.append(piece)
        held += piece.size
        cut = limit is not None and total + held >= limit
        if held >= chunk or cut:
            if held:
                yield _join(parts)
            total, parts, held = total + held, [], 0
            if cut:
                return
    if held:
        yield _join(parts)


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def decode(source: Source, sample_rate: int = 8000, max_seconds: float | None = None,
           time_limit: float | None = None) -> np.ndarray:
    """Decode a whole (short) input into one mono float32 array."""
    chunks = list(iter_pcm(source, sample_rate, max_seconds=max_seconds, time_limit=time_limit))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
