"""A speech-heavy generated series: text-to-speech dialogue over music beds and sound effects.

Needs the Debian packages ``espeak-ng`` (the voices) and ``bible-kjv`` (its ``bible`` command prints
the King James Version, a public-domain text the characters read), and the music corpus that
../shared/corpus/build_corpus.sh builds (bench.engine finds or builds it).

Every episode opens with the same theme (a fixed stretch of one corpus track), then plays scenes: two
or three of a cast of six characters (each an espeak-ng voice with its own speed and pitch) read
consecutive verses in turn over a music bed, with door knocks, slams, whooshes, beeps and footsteps.
Unseen episodes are made the same way from beds the indexed episodes never use, and read another part
of the text, so that their clips are unindexed audio in the series' style. The corpus is split once
(from the seed) into the theme, the indexed episodes' beds, the unseen episodes' beds and uploader music
that no episode contains.

An episode depends only on (seed, its number, indexed or unseen), so files are cached one by one
under ~/.cache/citywok/series/seed<seed>-g<GENERATOR>/ and a larger series reuses a smaller one's.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from citywok.matcher import synth
from citywok.matcher.engine.decode import decode

RATE = 22050  # espeak-ng's own rate; episodes are stored at it as FLAC
GENERATOR = 2  # bump when the episodes' content changes, so old caches are not reused
CACHE = Path(os.environ.get("CITYWOK_CACHE", Path.home() / ".cache" / "citywok")) / "series"
THEME_SECONDS = 20.0
MIN_MINUTES, MAX_MINUTES = 4.0, 6.0
MAX_VERSES = 400  # more than an episode reads
SPEECH_RMS = 0.1  # each spoken line is brought to this level; beds and effects sit relative to it


@dataclass(frozen=True)
class Voice:
    name: str
    voice: str  # espeak-ng voice (language + variant)
    wpm: int
    pitch: int  # espeak-ng 0..99


CAST = (
    Voice("Anna", "en-us+f3", 165, 65),
    Voice("Bert", "en-gb", 150, 35),
    Voice("Claire", "en-gb-x-rp+f2", 180, 55),
    Voice("Doug", "en-gb-scotland", 140, 25),
    Voice("Eve", "en-029+f4", 170, 75),
    Voice("Frank", "en-us+m3", 195, 45),
)
NARRATOR = Voice("Uploader", "en-us-nyc+m7", 175, 50)  # talks over clips; never in an episode


@dataclass(frozen=True)
class EpisodeFile:
    id: str
    path: str
    seconds: float
    theme_seconds: float
    indexed: bool


@dataclass(frozen=True)
class Split:
    """The corpus tracks as the series uses them."""

    theme: str
    beds: tuple[str, ...]  # indexed episodes' beds
    unseen_beds: tuple[str, ...]
    uploader: tuple[str, ...]  # music laid over clips by "uploaders": in no episode


def split_corpus(tracks: list[Path], seed: int) -> Split:
    """Disjoint sets of tracks, drawn from the seed; needs at least 12 tracks."""
    if len(tracks) < 12:
        raise ValueError(f"the series needs at least 12 corpus tracks, got {len(tracks)}")
    order = [str(tracks[i]) for i in np.random.default_rng(seed).permutation(len(tracks))]
    n = len(order)
    n_up, n_unseen = max(3, n // 9), max(3, n // 5)
    return Split(order[0], tuple(order[1 + n_up + n_unseen:]), tuple(order[1 + n_up:1 + n_up + n_unseen]),
                 tuple(order[1:1 + n_up]))


@functools.lru_cache(maxsize=1)
def scripture() -> tuple[str, ...]:
    """The verses of the King James Version, one a line, without their references."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    return tuple(line.split(" ", 1)[1].strip() for line in out.splitlines() if " " in line)


def speak(text: str, voice: Voice) -> np.ndarray:
    """One line spoken by espeak-ng, float32 at RATE, brought to SPEECH_RMS."""
    wav = subprocess.run(["espeak-ng", "-v", voice.voice, "-s", str(voice.wpm), "-p", str(voice.pitch),
                          "--stdout", text], check=True, capture_output=True).stdout
    pcm = np.frombuffer(wav[44:], "<i2").astype(np.float32) / 32768  # a streamed WAV: header of 44 bytes
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
    return pcm * (SPEECH_RMS / rms) if rms > 0 else pcm


@functools.lru_cache(maxsize=6)
def track_pcm(path: str) -> np.ndarray:
    return decode(path, RATE)


def _fade(x: np.ndarray, seconds: float = 0.3) -> np.ndarray:
    n = min(x.size // 2, int(seconds * RATE))
    if n == 0:
        return x
    ramp = np.linspace(0, 1, n, dtype=np.float32)
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def excerpt(path: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of ``n`` samples of a track (looped if shorter), faded in and out."""
    x = track_pcm(path)
    if x.size <= n:
        x = np.tile(x, n // max(1, x.size) + 1)
    start = int(rng.integers(0, x.size - n + 1))
    return _fade(x[start:start + n])


def theme(split: Split) -> np.ndarray:
    """The opening theme every episode shares: the same stretch of the theme track."""
    x = track_pcm(split.theme)
    start = min(int(30 * RATE), max(0, x.size - int(THEME_SECONDS * RATE)))
    return _fade(x[start:start + int(THEME_SECONDS * RATE)], 1.0)


def _lowpassed_noise(n: int, rng: np.random.Generator, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[np.fft.rfftfreq(n, 1 / RATE) > cutoff] = 0
    return np.fft.irfft(spec, n).astype(np.float32)


def effect(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A generated sound effect: knock, slam, whoosh, beep or footsteps (peak about 0.5)."""
    if kind == "knock":
        hit = _lowpassed_noise(int(0.08 * RATE), rng, 900) * np.exp(-np.arange(int(0.08 * RATE)) / (0.015 * RATE))
        gap = np.zeros(int(0.25 * RATE), np.float32)
        x = np.concatenate([hit, gap, hit, gap, hit])
    elif kind == "slam":
        n = int(0.6 * RATE)
        x = _lowpassed_noise(n, rng, 2500) * np.exp(-np.arange(n) / (0.08 * RATE))
    elif kind == "whoosh":
        n = int(1.2 * RATE)
        x = _lowpassed_noise(n, rng, float(rng.uniform(1500, 4000))) * np.sin(np.linspace(0, np.pi, n)) ** 2
    elif kind == "beep":
        t = np.arange(int(0.3 * RATE)) / RATE
        x = np.sin(2 * np.pi * float(rng.choice([880.0, 1000.0, 1320.0])) * t)
    else:  # footsteps
        step = _lowpassed_noise(int(0.05 * RATE), rng, 600) * np.exp(-np.arange(int(0.05 * RATE)) / (0.01 * RATE))
        x = np.concatenate([np.concatenate([step, np.zeros(int(rng.uniform(0.35, 0.5) * RATE), np.float32)])
                            for _ in range(int(rng.integers(4, 9)))])
    x = x.astype(np.float32)
    return x * (0.5 / max(1e-6, float(np.abs(x).max())))


EFFECTS = ("knock", "slam", "whoosh", "beep", "footsteps")


def dialogue(rng: np.random.Generator, verse: int) -> tuple[np.ndarray, int]:
    """Lines of two or three characters in turn, with short pauses; returns the audio and the next verse."""
    verses = scripture()
    speakers = rng.choice(len(CAST), int(rng.integers(2, 4)), replace=False)
    parts = []
    for k in range(int(rng.integers(4, 9))):
        parts.append(speak(verses[verse % len(verses)], CAST[int(speakers[k % speakers.size])]))
        parts.append(np.zeros(int(rng.uniform(0.2, 0.8) * RATE), np.float32))
        verse += 1
    return np.concatenate(parts), verse


def scene(rng: np.random.Generator, beds: tuple[str, ...], verse: int) -> tuple[np.ndarray, int]:
    """Dialogue over a bed (or over room tone), with a few effects, then a short music sting."""
    speech, verse = dialogue(rng, verse)
    if rng.random() < 0.75:
        bed = excerpt(str(rng.choice(beds)), speech.size, rng) * float(10 ** (rng.uniform(-16, -8) / 20))
    else:
        bed = 0.003 * rng.standard_normal(speech.size).astype(np.float32)
    out = speech + bed
    for _ in range(int(rng.integers(1, 4))):
        fx = effect(str(rng.choice(EFFECTS)), rng)
        if fx.size < out.size:
            at = int(rng.integers(0, out.size - fx.size))
            out[at:at + fx.size] += fx * float(rng.uniform(0.3, 1.0))
    sting = excerpt(str(rng.choice(beds)), int(rng.uniform(1.5, 4.0) * RATE), rng) * 0.8
    return np.concatenate([out, sting]), verse


def episode_pcm(seed: int, number: int, indexed: bool, split: Split,
                minutes: tuple[float, float] = (MIN_MINUTES, MAX_MINUTES)) -> np.ndarray:
    """One episode: the shared theme, then scenes up to its seeded length (4 to 6 minutes by default)."""
    rng = np.random.default_rng([seed, number, int(indexed)])
    seconds = float(rng.uniform(*minutes) * 60)
    beds = split.beds if indexed else split.unseen_beds
    parts, total = [theme(split)], THEME_SECONDS
    verse = int(rng.integers(*verse_range(indexed)))
    while total < seconds:
        x, verse = scene(rng, beds, verse)
        parts.append(x)
        total += x.size / RATE
    pcm = np.concatenate(parts)[:int(seconds * RATE)]
    return (pcm * (0.9 / max(1e-6, float(np.abs(pcm).max())))).astype(np.float32)


def verse_range(indexed: bool) -> tuple[int, int]:
    """Where an episode's first verse may be: indexed episodes read the first three quarters of the
    text and unseen ones the rest, so that no unseen line is an indexed line in the same voice."""
    split_at = len(scripture()) * 3 // 4
    return (0, split_at - MAX_VERSES) if indexed else (split_at, len(scripture()) - MAX_VERSES)


def episode_id(number: int, indexed: bool) -> str:
    return f"S01E{number:02d}" if indexed else f"unseen{number:02d}"


def _build(job: tuple[int, int, bool, Split, str, tuple[float, float]]) -> EpisodeFile:
    seed, number, indexed, split, folder, minutes = job
    path = Path(folder) / f"{episode_id(number, indexed)}.flac"
    pcm = episode_pcm(seed, number, indexed, split, minutes)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(synth.encode(pcm, RATE, "flac"))
    tmp.rename(path)
    return EpisodeFile(episode_id(number, indexed), str(path), pcm.size / RATE, THEME_SECONDS, indexed)


def build_series(tracks: list[Path], episodes: int, unseen: int, seed: int, workers: int = 2,
                 cache: Path = CACHE, minutes: tuple[float, float] = (MIN_MINUTES, MAX_MINUTES)
                 ) -> tuple[list[EpisodeFile], Split]:
    """The series' episode files (indexed first, then unseen), building only those not cached yet."""
    split = split_corpus(tracks, seed)
    length = "" if minutes == (MIN_MINUTES, MAX_MINUTES) else f"-m{minutes[0]:g}-{minutes[1]:g}"
    folder = cache / f"seed{seed}-g{GENERATOR}{length}"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "episodes.json"
    known = {e["id"]: EpisodeFile(**e) for e in json.loads(index_path.read_text())} if index_path.is_file() else {}
    wanted = [(n, True) for n in range(1, episodes + 1)] + [(n, False) for n in range(1, unseen + 1)]
    todo = [(seed, n, ix, split, str(folder), minutes) for n, ix in wanted
            if episode_id(n, ix) not in known or not Path(known[episode_id(n, ix)].path).is_file()]
    if todo:
        print(f"generating {len(todo)} series episodes into {folder} ...", flush=True)
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            for ep in pool.map(_build, todo):
                known[ep.id] = ep
        index_path.write_text(json.dumps([asdict(e) for e in sorted(known.values(), key=lambda e: e.id)]))
    return [known[episode_id(n, ix)] for n, ix in wanted], split
