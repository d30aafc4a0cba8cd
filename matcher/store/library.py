"""A version's season shards opened together: what identify searches and what the server swaps."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import lmdb
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.store.shard import Episode, Shard, ShardError
from citywok.matcher.store.shared import SharedSegment
from citywok.matcher.store.shared import load as load_shared

from citywok import layout

log = logging.getLogger("citywok.library")


class Library:
    """Every season shard of one version folder, read-only unless ``writable``."""

    def __init__(self, version: str, shards: dict[int, Shard], params: FingerprintParams,
                 path: Path | None = None, failed: dict[int, str] | None = None) -> None:
        self.version = version
        self.path = path  # the version folder
        self.shards = shards
        self.params = params
        self.failed: dict[int, str] = dict(failed or {})  # season -> why it is not served
        self._dropped: list[Shard] = []  # left out while open; closed with the library
        self._episodes: dict[int, dict[int, Episode]] = {}
        self.shared: dict[int, list[SharedSegment]] = {}
        self.refresh()

    @classmethod
    def open(cls, vdir: Path, params: FingerprintParams = DEFAULT_PARAMS, max_seasons: int | None = None,
             writable: bool = False, only: Collection[int] | None = None, pin: bool = False) -> Library:
        """``pin``: nothing writes to this version while it is open (a fetched version being served),
        so each shard keeps one read snapshot parsed (:meth:`Shard.pin`).

        A season that cannot be opened (damaged, other parameters) is left out and named in
        :attr:`failed`; only a version none of whose seasons opens is refused.
        """
        vdir = Path(vdir)
        seasons = layout.pick_seasons(layout.season_dirs(vdir), max_seasons, only)
        shards: dict[int, Shard] = {}
        failed: dict[int, str] = {}
        for n, path in seasons.items():
            try:
                shards[n] = Shard.open(path, params, writable=writable, pin=pin)
            except ShardError as e:
                log.error("season %d of %s is not served: %s", n, vdir.name, e)
                failed[n] = str(e)
        if failed and not shards:
            raise ShardError("no season opens: " + "; ".join(f"season {n}: {why}" for n, why in failed.items()))
        try:
            return cls(vdir.name, shards, params, vdir, failed)
        except (ShardError, lmdb.Error, ValueError) as e:
            for s in shards.values():
                s.close()
            raise ShardError(f"{vdir.name}: {e}") from None

    def check(self) -> bool:
        """Leave out every season whose file shrank or went since it was opened (reading it would be a
        SIGBUS); True when one was. Cheap: run before each lookup batch and at each poll."""
        bad = {n: why for n, s in self.shards.items() if isinstance(s, Shard) and (why := s.intact()) is not None}
        if not bad:
            return False
        for n, why in bad.items():
            log.error("season %d of %s is no longer served: %s", n, self.version, why)
            self.failed[n] = why
            self._dropped.append(self.shards[n])
        self.shards = {n: s for n, s in self.shards.items() if n not in bad}  # replaced whole: readers
        return True

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

    def stats(self) -> dict[str, int | float]:
        """What is indexed: seasons, episodes, hours of audio and distinct hashes (GET /api/v1/stats)."""
        seconds = sum(e.duration for eps in self._episodes.values() for e in eps.values())
        return {"seasons": len(self.shards), "episodes": self.episode_count(), "hours": round(seconds / 3600, 3),
                "hashes": sum(int(s.meta()["hash_count"]) for s in self.shards.values())}

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.shards.values())

    def close(self) -> None:
        for s in [*self.shards.values(), *self._dropped]:
            s.close()
        self.shards, self._dropped = {}, []

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
