"""Shared legacy-mode test data: generated episodes ingested once as pickles and once as LMDB."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.legacy.ingest import ingest_pickle
from citywok.matcher.legacy.migrate import migrate
from citywok.matcher.store.ingest import ingest_paths

from citywok import layout

RATE = 22050
SECONDS = 40.0
THEME_SECONDS = 10.0  # season 1 opens every episode with the same theme: a shared segment
SEASONS = {1: (101, 102, 103), 2: (201, 202)}  # season -> episode seeds


def episode_audio(season: int, seed: int) -> np.ndarray:
    body = synth.episode(seed, SECONDS, RATE)
    if season != 1:
        return body
    return np.concatenate([synth.episode(7, THEME_SECONDS, RATE), body])


@dataclass(frozen=True)
class Corpus:
    episodes: Path  # season_N/ folders of flac files
    pickles: Path  # DATA_DIR holding season_NN.pkl (ingested with --format pickle)
    native: Path  # DATA_DIR ingested straight to LMDB
    migrated: Path  # folder of season_NN.lmdb migrated from the pickles
    clips: dict[str, bytes]  # name -> encoded clip


def _clip(season: int, seed: int, start: float, seconds: float = 6.0, snr: float = 12.0) -> bytes:
    x = episode_audio(season, seed)[int(start * RATE) : int((start + seconds) * RATE)]
    return synth.encode(synth.add_noise(x, snr, seed=seed), RATE, "mp3", bitrate=64000)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("legacy")
    episodes, pickles, native = root / "episodes", root / "pickles", root / "native"
    for season, seeds in SEASONS.items():
        d = episodes / f"season_{season}"
        d.mkdir(parents=True)
        for i, seed in enumerate(seeds, 1):
            (d / f"Show.S{season:02d}E{i:02d}.flac").write_bytes(
                synth.encode(episode_audio(season, seed), RATE, "flac"))
        for results in (ingest_pickle([d], season, pickles, workers=1), ingest_paths([d], season, native, workers=1)):
            assert [r.status for r in results] == ["added"] * len(seeds)
    migrated = root / "migrated"
    reports = migrate(pickles, migrated)
    assert [r.status for r in reports] == ["migrated"] * len(SEASONS)
    fast = synth.change_speed(episode_audio(1, 103)[30 * RATE : 37 * RATE], 1.03)
    clips = {
        "s1e2@22.5": _clip(1, 102, 22.5),
        "s2e1@3": _clip(2, 201, 3.0),
        "s2e2@30": _clip(2, 202, 30.0, seconds=5.0, snr=6.0),
        "s1e3@30-fast": synth.encode(fast, RATE, "mp3", bitrate=64000),
        "theme@2": _clip(1, 101, 2.0),
        "unindexed": _clip(2, 999, 5.0),
    }
    return Corpus(episodes, pickles, native, migrated, clips)


def serve_migrated(corpus: Corpus, data_dir: Path) -> Path:
    """A DATA_DIR whose `current` version holds the migrated shards (what an operator would deploy)."""
    from citywok.matcher.store.ingest import write_manifest

    vdir = layout.version_dir(data_dir, "migrated")
    vdir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(corpus.migrated, vdir)
    write_manifest(data_dir, "migrated")
    layout.flip_current(data_dir, "migrated")
    return vdir
