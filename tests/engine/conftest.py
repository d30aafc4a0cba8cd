from __future__ import annotations

from pathlib import Path

import pytest
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_episode, fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import Shard

RATE = 8000
SECONDS = 60.0
EPISODES = 6


@pytest.fixture(scope="session")
def episodes() -> dict[str, object]:
    return {f"S01E{i:02d}": synth.episode(i, SECONDS, RATE) for i in range(1, EPISODES + 1)}


@pytest.fixture(scope="session")
def library(tmp_path_factory: pytest.TempPathFactory, episodes: dict) -> Library:
    vdir = tmp_path_factory.mktemp("lib") / "v1"
    with Shard.create(vdir / "season_01.lmdb", DEFAULT_PARAMS, 1) as shard:
        for eid, x in episodes.items():
            shard.add_episode(eid, fingerprint_pcm(x), SECONDS, "0" * 64)
    lib = Library.open(vdir)
    yield lib
    lib.close()


@pytest.fixture(scope="session")
def triplet_library(tmp_path_factory: pytest.TempPathFactory, episodes: dict) -> Library:
    """The episodes of ``library`` with their triplets stored too (``library`` has none: a shard written
    before triplets)."""
    vdir = tmp_path_factory.mktemp("tlib") / "v1"
    with Shard.create(vdir / "season_01.lmdb", DEFAULT_PARAMS, 1) as shard:
        for eid, x in episodes.items():
            hashes, triplets, _ = fingerprint_episode([x])
            shard.add_episode(eid, hashes, SECONDS, "0" * 64, triplets=triplets)
    lib = Library.open(vdir)
    yield lib
    lib.close()


def write_episode_files(folder: Path, seeds: list[int], seconds: float = 30.0, fmt: str = "flac") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in seeds:
        p = folder / f"Show.S02E{s:02d}.{fmt}"
        p.write_bytes(synth.encode(synth.episode(100 + s, seconds, 22050), 22050, fmt))
        out.append(p)
    return out
