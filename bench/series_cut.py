"""Cutting the series benchmark's clips: which excerpts, which edits, cached as files with their truth.

A clip is cut from an episode's body (after the shared theme, whose audio every episode holds), edited
(bench.series_clips) and encoded. Unindexed clips come from the unseen episodes, under every edit in
turn. Everything is drawn from the seed, and the clips are cached beside the series' episodes.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from citywok.matcher.engine.decode import decode

from bench import series_clips, series_gen
from bench.series_clips import EDITS, Edit
from bench.series_gen import RATE, EpisodeFile, Split


@dataclass(frozen=True)
class Clip:
    path: str
    row: str
    episode: str | None  # None: unindexed audio
    start: float  # where the excerpt starts in the episode, seconds
    seconds: float  # the excerpt's length
    container: str


def row_name(edit: Edit, seconds: float) -> str:
    return f"{edit.label} {seconds:g} s"


def clip_folder(series: Path, episodes: int, unseen: int, per_row: int, unindexed: int, seconds: str) -> Path:
    """Where the clips of these counts are cached, named by the edits too: a new row is a new folder,
    never a stale cache without it."""
    plan = hashlib.sha256(repr(EDITS).encode()).hexdigest()[:8]
    return series / f"clips-e{episodes}-u{unseen}-n{per_row}-x{unindexed}-s{seconds}-{plan}"


def rows(lengths: list[float]) -> list[tuple[Edit, float]]:
    return [(e, s) for s in lengths for e in EDITS]


@dataclass(frozen=True)
class Job:
    """The clips to cut from one episode."""

    episode: EpisodeFile
    cuts: list[tuple[int, Edit, float, float]]  # clip number, edit, seconds, start
    uploader: tuple[str, ...]
    folder: str
    seed: int


def plan(episodes: list[EpisodeFile], split: Split, lengths: list[float], per_row: int, unindexed: int,
         seed: int, folder: Path) -> list[Job]:
    """Random excerpts of random episodes for every row, then the unindexed clips; grouped by episode."""
    rng = np.random.default_rng([seed, 17])
    indexed = [e for e in episodes if e.indexed]
    unseen = [e for e in episodes if not e.indexed]
    picks: list[tuple[EpisodeFile, Edit, float]] = []
    for edit, seconds in rows(lengths):
        picks += [(indexed[int(k)], edit, seconds) for k in rng.integers(0, len(indexed), per_row)]
    if unseen:
        combos = rows(lengths)
        picks += [(unseen[int(rng.integers(0, len(unseen)))], *combos[k % len(combos)]) for k in range(unindexed)]
    by_episode: dict[str, list[tuple[int, Edit, float, float]]] = {}
    for n, (ep, edit, seconds) in enumerate(picks):
        start = float(rng.uniform(ep.theme_seconds + 0.5, ep.seconds - seconds - 0.5))
        by_episode.setdefault(ep.id, []).append((n, edit, seconds, round(start, 3)))
    eps = {e.id: e for e in episodes}
    return [Job(eps[i], cuts, split.uploader, str(folder), seed) for i, cuts in by_episode.items()]


def _overlays(rng: np.random.Generator, uploader: tuple[str, ...], seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Uploader music (a track no episode holds) and a voice that is not in the cast, each ``seconds`` long."""
    music = series_gen.excerpt(str(rng.choice(uploader)), int(seconds * RATE), rng)
    verses = series_gen.scripture()
    voice = series_gen.speak(verses[int(rng.integers(len(verses) // 2, len(verses)))], series_gen.NARRATOR)
    return music, voice


def cut(job: Job) -> list[Clip]:
    """Cut, edit, encode and write one episode's clips (runs in a worker process)."""
    pcm = decode(job.episode.path, RATE)
    out = []
    for n, edit, seconds, start in job.cuts:
        rng = np.random.default_rng([job.seed, n])
        x = pcm[int(start * RATE):int(start * RATE) + int(seconds * RATE)]
        music, voice = _overlays(rng, job.uploader, seconds) if edit.kind in {"music", "voice", "speed+music"} \
            else (x, x)
        y = series_clips.apply(edit, x, RATE, music, voice, n)
        path = Path(job.folder) / f"clip{n:05d}.{edit.container}"
        path.write_bytes(series_clips.encode(edit, y, RATE, n))
        out.append(Clip(str(path), row_name(edit, seconds), job.episode.id if job.episode.indexed else None,
                        start, seconds, edit.container))
    return out


def cut_clips(episodes: list[EpisodeFile], split: Split, lengths: list[float], per_row: int, unindexed: int,
              seed: int, folder: Path, workers: int = 2) -> list[Clip]:
    """The clips, cut once per (series, lengths, counts, seed) and cached in ``folder``."""
    index = folder / "clips.json"
    if index.is_file():
        return [Clip(**c) for c in json.loads(index.read_text())]
    folder.mkdir(parents=True, exist_ok=True)
    jobs = plan(episodes, split, lengths, per_row, unindexed, seed, folder)
    print(f"cutting {sum(len(j.cuts) for j in jobs)} clips into {folder} ...", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        clips = [c for part in pool.map(cut, jobs) for c in part]
    clips.sort(key=lambda c: c.path)
    index.write_text(json.dumps([asdict(c) for c in clips]))
    return clips
