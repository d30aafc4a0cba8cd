"""Shared legacy-mode test data: generated episodes ingested once as pickles and once as LMDB."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from citywok import layout
from matcher import synth
from matcher.ingest import ingest_paths
from matcher.migrate import migrate

RATE = 22050
SECONDS = 40.0
SEASONS = {1: (101, 102, 103), 2: (201, 202)}  # season -> episode seeds


@dataclass(frozen=True)
class Corpus:
    episodes: Path  # season_N/ folders of flac files
    pickles: Path  # DATA_DIR holding season_NN.pkl (ingested with --format pickle)
    native: Path  # DATA_DIR ingested straight to LMDB
    migrated: Path  # folder of season_NN.lmdb migrated from the pickles
    clips: dict[str, bytes]  # name -> encoded clip


def _clip(seed: int, start: float, seconds: float = 6.0, snr: float = 12.0) -> bytes:
    x = synth.episode(seed, SECONDS, RATE)[int(start * RATE) : int((start + seconds) * RATE)]
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
                synth.encode(synth.episode(seed, SECONDS, RATE), RATE, "flac"))
        for data_dir, fmt in ((pickles, "pickle"), (native, "lmdb")):
            results = ingest_paths([d], season, data_dir, workers=1, fmt=fmt)
            assert [r.status for r in results] == ["added"] * len(seeds)
    migrated = root / "migrated"
    reports = migrate(pickles, migrated)
    assert [r.status for r in reports] == ["migrated"] * len(SEASONS)
    clips = {
        "s1e2@12.5": _clip(102, 12.5),
        "s2e1@3": _clip(201, 3.0),
        "s2e2@30": _clip(202, 30.0, seconds=5.0, snr=6.0),
        "s1e3@20-fast": synth.encode(synth.change_speed(synth.episode(103, SECONDS, RATE)[20 * RATE : 27 * RATE], 1.03),
                                     RATE, "mp3", bitrate=64000),
        "unindexed": _clip(999, 5.0),
    }
    return Corpus(episodes, pickles, native, migrated, clips)


def serve_migrated(corpus: Corpus, data_dir: Path) -> Path:
    """A DATA_DIR whose `current` version holds the migrated shards (what an operator would deploy)."""
    from matcher.ingest import write_manifest

    vdir = layout.version_dir(data_dir, "migrated")
    vdir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(corpus.migrated, vdir)
    write_manifest(data_dir, "migrated")
    layout.flip_current(data_dir, "migrated")
    return vdir
