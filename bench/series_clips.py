"""Clips as users upload them: edited with FFmpeg filter graphs (PyAV), encoded as AAC in an MP4 with a
video track, or as MP3.

Edits: speed (``asetrate`` + ``aresample``: pitch and tempo together), tempo alone (``atempo``), pitch
alone (speed then ``atempo`` back), a pitch shift on top of a tempo or speed change (speed by the pitch
factor, then ``atempo`` to the time factor), music or a voice mixed over at 0 dB (``amix``), and a phone
filming a TV (``highpass``/``lowpass`` band limit, ``aecho`` room echo, room noise). A row's ``seconds`` is the
length of the episode excerpt; a clip sped up by f lasts seconds / f.
"""

from __future__ import annotations

import functools
import io
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
import numpy as np

FRAME = 2048  # samples per frame pushed into a filter graph
AAC_RATE, AAC_BITRATE = 44100, 128000  # what a phone app's upload typically carries
MP3_RATE, MP3_BITRATE = 44100, 128000
VIDEO_SIZE, VIDEO_FPS = (320, 180), 25
PHONE_SNR_DB = 15.0


@dataclass(frozen=True)
class Edit:
    """One row's edit: ``kind`` in clean, music, voice, speed, tempo, pitch, speed+music, tempo+pitch,
    speed+pitch, phone."""

    label: str
    kind: str
    factor: float = 1.0  # speed or tempo factor; for pitch, semitones
    container: str = "mp4"
    semitones: float = 0.0  # tempo+pitch and speed+pitch: the pitch shift on top of the tempo or speed change

    @property
    def time_scale(self) -> float:
        """How much shorter the clip is than its excerpt."""
        return self.factor if self.kind in {"speed", "tempo", "speed+music", *COMBINED} else 1.0

    @property
    def pitch_scale(self) -> float:
        """How much higher the clip's frequencies are than the excerpt's."""
        if self.kind == "pitch":
            return 2 ** (self.factor / 12)
        moved = self.factor if self.kind in {"speed", "speed+music", "speed+pitch"} else 1.0
        return moved * 2 ** (self.semitones / 12)


COMBINED = ("tempo+pitch", "speed+pitch")  # a pitch shift on top of a tempo or a speed change


def _combined(kind: str, factor: float, semitones: float) -> Edit:
    return Edit(f"{kind.split('+')[0]} {factor:g} + pitch {semitones:+g} st", kind, factor, semitones=semitones)


EDITS = (
    Edit("clean", "clean"),
    Edit("clean mp3", "clean", container="mp3"),
    Edit("uploader music 0 dB", "music"),
    Edit("voice over 0 dB", "voice"),
    *(Edit(f"speed {f:g}", "speed", f) for f in (0.8, 0.9, 1.1, 1.25)),
    *(Edit(f"tempo {f:g}", "tempo", f) for f in (0.8, 1.25)),
    *(Edit(f"pitch {n:+d} st", "pitch", n) for n in (-3, -2, 2, 3)),
    *(_combined(*c) for c in (("tempo+pitch", 1.15, 2), ("tempo+pitch", 0.85, -2), ("speed+pitch", 1.1, -3),
                              ("tempo+pitch", 1.2, -3))),
    Edit("speed 1.25 + music 0 dB", "speed+music", 1.25),
    Edit("phone recording of a TV", "phone"),
)


def _frames(pcm: np.ndarray, rate: int) -> list[av.AudioFrame]:
    out = []
    for i in range(0, pcm.size, FRAME):
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None, i:i + FRAME], np.float32), format="flt",
                                       layout="mono")
        f.sample_rate, f.pts, f.time_base = rate, i, Fraction(1, rate)
        out.append(f)
    return out


def _drain(sink: av.filter.context.FilterContext) -> list[np.ndarray]:
    out = []
    while True:
        try:
            out.append(sink.pull().to_ndarray().reshape(-1))
        except (BlockingIOError, av.error.EOFError):
            return out


def filter_graph(inputs: list[np.ndarray], rate: int, chains: list[list[tuple[str, str]]],
                 mix: str | None = None) -> np.ndarray:
    """Run mono float32 inputs through FFmpeg filter chains (one per input), mixed by ``mix`` (an amix
    argument string) when there are several; the output is mono float32 at ``rate``."""
    graph = av.filter.Graph()
    srcs, tails = [], []
    for chain in chains:
        node = src = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
        for name, args in chain:
            nxt = graph.add(name, args)
            node.link_to(nxt)
            node = nxt
        srcs.append(src)
        tails.append(node)
    if len(tails) > 1:
        mixer = graph.add("amix", mix or f"inputs={len(tails)}:duration=first:normalize=0")
        for k, t in enumerate(tails):
            t.link_to(mixer, 0, k)
        tails = [mixer]
    fmt = graph.add("aformat", f"sample_fmts=flt:sample_rates={rate}:channel_layouts=mono")
    sink = graph.add("abuffersink")
    tails[0].link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    out: list[np.ndarray] = []
    for src, pcm in zip(srcs, inputs, strict=True):
        for f in _frames(pcm, rate):
            src.push(f)
            out += _drain(sink)
    for src in srcs:
        src.push(None)
    out += _drain(sink)
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1e-9


def overlay(x: np.ndarray, other: np.ndarray, rate: int, snr_db: float = 0.0) -> np.ndarray:
    """``other`` mixed over ``x`` (looped to its length) so that x is ``snr_db`` above it (amix)."""
    other = np.resize(other, x.size)
    gain = _rms(x) / _rms(other) / 10 ** (snr_db / 20)
    return filter_graph([x, other], rate, [[], [("volume", f"{gain:.6f}")]])


def scaled(x: np.ndarray, rate: int, kind: str, factor: float) -> np.ndarray:
    """Speed, tempo or pitch changed by FFmpeg's filters; ``factor`` is semitones for pitch."""
    if kind == "tempo":
        return filter_graph([x], rate, [[("atempo", f"{factor}")]])
    ratio = 2 ** (factor / 12) if kind == "pitch" else factor
    chain = [("asetrate", f"{rate * ratio:.3f}"), ("aresample", f"{rate}")]
    if kind == "pitch":
        chain.append(("atempo", f"{1 / ratio:.6f}"))
    return filter_graph([x], rate, [chain])


def combined(x: np.ndarray, rate: int, time_scale: float, pitch_scale: float) -> np.ndarray:
    """Time and frequency scaled together by any factors: sped up by ``pitch_scale`` (asetrate +
    aresample), then its tempo taken on to ``time_scale`` (atempo)."""
    chain = [("asetrate", f"{rate * pitch_scale:.3f}"), ("aresample", f"{rate}"),
             ("atempo", f"{time_scale / pitch_scale:.6f}")]
    return filter_graph([x], rate, [chain])


def phone(x: np.ndarray, rate: int, seed: int) -> np.ndarray:
    """A phone filming a TV: a small speaker and mic's band, the room's echo, and room noise."""
    room = [("highpass", "f=250"), ("lowpass", "f=3500"), ("aecho", "0.8:0.6:35|80:0.35|0.25")]
    y = filter_graph([x], rate, [room])
    noise = np.random.default_rng(seed).standard_normal(y.size).astype(np.float32)
    return overlay(y, noise, rate, PHONE_SNR_DB)


def apply(edit: Edit, x: np.ndarray, rate: int, music: np.ndarray, voice: np.ndarray, seed: int) -> np.ndarray:
    """The edited excerpt, before encoding."""
    if edit.kind in {"speed", "tempo", "pitch"}:
        return scaled(x, rate, edit.kind, edit.factor)
    if edit.kind in COMBINED:
        return combined(x, rate, edit.time_scale, edit.pitch_scale)
    if edit.kind == "speed+music":
        return overlay(scaled(x, rate, "speed", edit.factor), music, rate)
    if edit.kind == "music":
        return overlay(x, music, rate)
    if edit.kind == "voice":
        return overlay(x, voice, rate)
    if edit.kind == "phone":
        return phone(x, rate, seed)
    return x


@functools.lru_cache(maxsize=8)
def _picture(tint: int) -> np.ndarray:
    w, h = VIDEO_SIZE
    ramp = (np.arange(w, dtype=np.uint16) % 256).astype(np.uint8)
    colour = np.array([tint * 37 % 256, tint * 91 % 256, tint * 53 % 256], np.uint16)
    return (np.broadcast_to(ramp[None, :, None], (h, w, 3)) // 2 + colour // 2).astype(np.uint8)


def _video_frames(seconds: float, seed: int) -> list[av.VideoFrame]:
    """A moving gradient with a seeded tint: cheap to encode, but a real video track."""
    picture = _picture(seed % 8)
    frames = []
    for i in range(max(1, int(np.ceil(seconds * VIDEO_FPS)))):
        f = av.VideoFrame.from_ndarray(np.roll(picture, 4 * i, axis=1), format="rgb24")
        f.pts = i
        frames.append(f)
    return frames


def _encode_audio(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                  pcm: np.ndarray, rate: int) -> None:
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=stream.layout.name,
                                  rate=stream.rate, frame_size=stream.codec_context.frame_size or None)
    frames = [g for f in _frames(np.clip(pcm, -1, 1), rate) for g in resampler.resample(f)]
    frames += resampler.resample(None)
    for f in frames:
        for pkt in stream.encode(f):
            container.mux(pkt)
    for pkt in stream.encode(None):
        container.mux(pkt)


def encode_mp4(pcm: np.ndarray, rate: int, seed: int = 0) -> bytes:
    """AAC (44.1 kHz stereo) in an MP4 with an H.264 video track, index first as web uploads have it."""
    with tempfile.TemporaryDirectory() as tmp:  # faststart rewrites the file by name: not in memory
        path = Path(tmp) / "clip.mp4"
        _write_mp4(path, pcm, rate, seed)
        return path.read_bytes()


def _write_mp4(path: Path, pcm: np.ndarray, rate: int, seed: int) -> None:
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        v = c.add_stream("libx264", rate=VIDEO_FPS)
        v.width, v.height, v.pix_fmt = VIDEO_SIZE[0], VIDEO_SIZE[1], "yuv420p"
        v.options = {"preset": "ultrafast"}
        a = c.add_stream("aac", rate=AAC_RATE)
        a.layout, a.bit_rate = "stereo", AAC_BITRATE
        a.options = {"aac_coder": "fast"}  # FFmpeg's default coder costs several times more, for no use here
        for f in _video_frames(pcm.size / rate, seed):
            for pkt in v.encode(f):
                c.mux(pkt)
        for pkt in v.encode(None):
            c.mux(pkt)
        _encode_audio(c, a, pcm, rate)


def encode_mp3(pcm: np.ndarray, rate: int) -> bytes:
    """MP3 at 44.1 kHz, 128 kbit/s, mono."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as c:
        a = c.add_stream("libmp3lame", rate=MP3_RATE)
        a.layout, a.bit_rate = "mono", MP3_BITRATE
        _encode_audio(c, a, pcm, rate)
    return buf.getvalue()


def encode(edit: Edit, pcm: np.ndarray, rate: int, seed: int = 0) -> bytes:
    return encode_mp3(pcm, rate) if edit.container == "mp3" else encode_mp4(pcm, rate, seed)
