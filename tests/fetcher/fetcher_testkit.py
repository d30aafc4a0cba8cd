"""Test helpers for the fetcher: generated season shards and a real S3-compatible server over HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.shard import Shard

from citywok import layout


def make_season(vdir: Path, season: int, seeds: list[int], seconds: float = 30.0) -> Path:
    """A real season shard from synthetic episodes (fingerprinted by the engine)."""
    path = vdir / layout.season_name(season)
    with Shard.create(path, DEFAULT_PARAMS, season) as shard:
        for seed in seeds:
            pcm = synth.episode(seed, seconds, DEFAULT_PARAMS.sample_rate)
            shard.add_episode(f"S{season:02d}E{seed:02d}", fingerprint_pcm(pcm), seconds, f"sha-{seed}")
    return path


def make_big_season(vdir: Path, season: int, episodes: int, hashes_per_episode: int, seed: int = 0) -> Path:
    """A large shard quickly: random landmark hashes shaped like real ones (21-bit keys, rising times)."""
    path = vdir / layout.season_name(season)
    rng = np.random.default_rng(seed * 1000 + season)
    with Shard.create(path, DEFAULT_PARAMS, season) as shard:
        for e in range(episodes):
            h = rng.integers(0, 1 << 21, hashes_per_episode, dtype=np.uint32)
            t = np.sort(rng.integers(0, 80_000, hashes_per_episode, dtype=np.uint32))
            shard.add_episode(f"S{season:02d}E{e + 1:02d}", Hashes(h, t), 1300.0, f"sha-{season}-{e}")
    return path
