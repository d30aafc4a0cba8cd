"""A version's season shards opened together: what identify searches and what the server swaps."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.store.shard import Episode, Shard, ShardError
from citywok.matcher.store.shared import SharedSegment
from citywok.matcher.store.shared import load as load_shared

from citywok import layout


class Library:
    """Every season shard of one version folder, read-only unless ``writable``."""

    def __init__(self, version: str, shards: dict[int, Shard], params: FingerprintParams,
                 path: Path | None = None) -> None:
        self.version = version
        self.path = path  # the version folder
        self.shards = shards
        self.params = params
        self._episodes: dict[int, dict[int, Episode]] = {}
        self.shared: dict[int, list[SharedSegment]] = {}
        self.refresh()

    @classmethod
    def open(cls, vdir: Path, params: FingerprintParams = DEFAULT_PARAMS, max_seasons: int | None = None,
             writable: bool = False, only: Collection[int] | None = None, pin: bool = False) -> Library:
        """``pin``: nothing writes to this version while it is open (a fetched version being served),
        so each shard keeps one read snapshot parsed (:meth:`Shard.pin`)."""
        vdir = Path(vdir)
        seasons = layout.pick_seasons(layout.season_dirs(vdir), max_seasons, only)
        shards: dict[int, Shard] = {}
        try:
            for n, path in seasons.items():
                shards[n] = Shard.open(path, params, writable=writable, pin=pin)
        except ShardError:
            for s in shards.values():
                s.close()
            raise
        return cls(vdir.name, shards, params, vdir)

    def refresh(self) -> None:
        """Re-read the episode tables and shared segments (after an ingest into a writable shard)."""
        self._episodes = {n: {e.slot: e for e in s.episodes()} for n, s in self.shards.items()}
        self.shared = {n: load_shared(s) for n, s in self.shards.items()}

    def episode(self, season: int, slot: int) -> Episode | None:
        return self._episodes.get(season, {}).get(slot)

    @property
    def seasons(self) -> list[int]:
        return sorted(self.shards)

    def episode_count(self) -> int:
        return sum(len(e) for e in self._episodes.values())

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.shards.values())

    def close(self) -> None:
        for s in self.shards.values():
            s.close()
        self.shards = {}

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
