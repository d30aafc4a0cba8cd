"""A version's season shards opened together: what identify searches and what the server swaps."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import lmdb
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.store.season import (
    MAX_SLOTS,
    SLOT_BITS,
    TRIPLET_MAX_POSTINGS,
    Episode,
    SeasonStore,
    lookup_seasons,
)
from citywok.matcher.store.shard import Shard, ShardError
from citywok.matcher.store.shared import SharedSegment
from citywok.matcher.store.shared import load as load_shared

from citywok import layout

log = logging.getLogger("citywok.library")


class Library:
    """Every season of one version folder, read-only unless ``writable``: the engine's ``Catalogue``."""

    writable = True

    def __init__(self, version: str, shards: dict[int, SeasonStore], params: FingerprintParams,
                 path: Path | None = None, failed: dict[int, str] | None = None) -> None:
        self.version = version
        self.path = path  # the version folder
        self.shards = shards
        self.params = params
        self.failed: dict[int, str] = dict(failed or {})  # season -> why it is not served
        self._dropped: list[SeasonStore] = []  # left out while open; closed with the library
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
        shards: dict[int, SeasonStore] = {}
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
        bad = {n: why for n, s in self.shards.items() if (why := s.intact()) is not None}
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

    def lookup(self, hashes: Hashes) -> Postings:
        """One lookup over every season: season k's slots are moved past ``k << SLOT_BITS``."""
        return lookup_seasons(list(self.shards.values()), hashes)

    def lookup_near(self, hashes: Hashes, slots: Collection[int]) -> Postings:
        """:meth:`lookup` in the seasons holding these slots (of an earlier lookup) alone."""
        return lookup_seasons(list(self.shards.values()), hashes, only={s >> SLOT_BITS for s in slots})

    def lookup_triplets(self, hashes: Hashes) -> Postings:
        """:meth:`lookup` in the triplet tables: each posting's time is its stored value."""
        return lookup_seasons(list(self.shards.values()), hashes, TRIPLET_MAX_POSTINGS, triplets=True)

    def entry(self, slot: int) -> tuple[int, Episode] | None:
        """The season and episode of a slot from :meth:`lookup`."""
        seasons = list(self.shards)
        k = slot >> SLOT_BITS
        if not 0 <= k < len(seasons):
            return None
        ep = self.episode(seasons[k], slot & (MAX_SLOTS - 1))
        return None if ep is None else (seasons[k], ep)

    def shared_label(self, season: int, episode_id: str, start: float, end: float, slack: float) -> str | None:
        for seg in self.shared.get(season, []):
            if seg.covers(episode_id, start, end, slack=slack):
                return seg.label()
        return None

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
