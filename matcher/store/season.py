"""The season store's contract: what a season holds (episodes, postings) and how a query is looked up
in several seasons at once. The LMDB ``Shard`` satisfies :class:`SeasonStore`; so does any other
season format (the legacy pickles), with no branch here on which one it is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import HASH_BITS, Hashes
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.triplets import Triplets

SLOT_BITS = 10  # episode slots per season, at most; a library moves season k's slots past k << SLOT_BITS
MAX_SLOTS = 1 << SLOT_BITS
GROUP_BITS = 3  # a query skips a group of 2**3 neighbouring hashes holding more than MAX_POSTINGS postings
MAX_POSTINGS = 1024  # per group; beyond it a hash is too common to be evidence
TRIPLET_MAX_POSTINGS = 1024  # the same for a group of triplet hashes


@dataclass(frozen=True)
class Episode:
    slot: int
    id: str
    title: str
    duration: float
    sha256: str
    hashes: int
    triplets: int | None = None  # None: stored without triplets (before they were, or by a store without them)

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "title": self.title, "duration": self.duration, "sha256": self.sha256,
               "hashes": self.hashes}
        return out if self.triplets is None else {**out, "triplets": self.triplets}


@dataclass(frozen=True)
class NewEpisode:
    """An episode to write: its fingerprints and what the episode table records of it."""

    id: str
    hashes: Hashes
    duration: float
    sha256: str
    title: str | None = None
    triplets: Triplets | None = None  # its scale-invariant triplets (none: the episode has no triplet postings)


@dataclass(frozen=True)
class Query:
    """A query's distinct hashes (sorted), worked out once for every season it is looked up in."""

    distinct: np.ndarray  # uint32, sorted
    wanted: np.ndarray  # a flag per possible hash, raised for ``distinct``


class SeasonStore(Protocol):
    """One season's episodes and postings, read-only or writable."""

    @property
    def path(self) -> Path: ...

    @property
    def writable(self) -> bool: ...

    def episodes(self) -> list[Episode]: ...

    def episode(self, episode_id: str) -> Episode | None: ...

    def meta(self) -> dict[str, Any]:
        """The season's counts: ``hash_count``, ``posting_count``, ``episode_count``, ``total_seconds``."""
        ...

    def find_postings(self, query: Query, max_postings: int, triplets: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored postings of ``query.distinct`` as (hash, slot, frame) arrays, leaving out every
        crowding group of more than ``max_postings`` postings and postings of no listed episode.
        ``triplets``: the season's triplet postings instead (none when it has no triplet table)."""
        ...

    def get_shared(self) -> list[dict[str, Any]]:
        """The season's shared segments as stored (``store.shared``); empty when none were found."""
        ...

    def intact(self) -> str | None:
        """None while the season can still be read safely, else why not (its file shrank or went)."""
        ...

    def nbytes(self) -> int: ...

    def close(self) -> None: ...


class SeasonWriter(Protocol):
    """A season being written by ingest (an LMDB shard, or a legacy pickle)."""

    @property
    def path(self) -> Path: ...

    @property
    def params(self) -> FingerprintParams: ...

    def episode(self, episode_id: str) -> Episode | None: ...

    def episodes(self) -> list[Episode]: ...

    def add_episodes(self, new: Sequence[NewEpisode]) -> list[Episode]: ...

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def shared_recorded(self) -> bool: ...

    def get_shared(self) -> list[dict[str, Any]]: ...

    def put_shared(self, segments: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def lookup_seasons(seasons: Sequence[SeasonStore], hashes: Hashes, max_postings: int = MAX_POSTINGS,
                   triplets: bool = False, only: Collection[int] | None = None) -> Postings:
    """Look a query up in several seasons at once; season k's slots come back as ``slot + (k << SLOT_BITS)``.
    ``triplets``: in the triplet tables, whose postings' times are stored values. ``only``: in seasons of
    these positions k alone.

    Each season reads only the groups the query touches; the pairing of postings with query times is
    done once over all of them.
    """
    z = np.zeros(0, np.int64)
    if len(hashes) == 0:
        return Postings(z, z, z, 0)
    uniq, order, first = hashes.by_hash
    found_h, found_slot, found_t = [], [], []
    with _flagged(uniq) as (wanted, position):
        query = Query(uniq, wanted)
        picked = [(k, s) for k, s in enumerate(seasons) if only is None or k in only]
        for k, season in picked:
            h, slot, t = season.find_postings(query, max_postings, triplets)
            found_h.append(h)
            found_slot.append(slot.astype(np.int64) + (k << SLOT_BITS))
            found_t.append(t)
        looked_up = int(uniq.size) * len(picked)
        if not found_h:
            return Postings(z, z, z, looked_up)
        h, gslot, db_t = np.concatenate(found_h), np.concatenate(found_slot), np.concatenate(found_t)
        u = position[h]
    # pair each posting with every query time of its hash (usually one)
    start = first[u]
    reps = np.diff(np.r_[first, hashes.hash.size])[u]
    if h.size and int(reps.max()) > 1:
        pi = np.repeat(np.arange(h.size), reps)
        qi = order[np.repeat(start - (np.cumsum(reps) - reps), reps) + np.arange(pi.size)]
        gslot, db_t = gslot[pi], db_t[pi]
    else:
        qi = order[start]
    return Postings(query_t=hashes.t[qi].astype(np.int64), slot=gslot, db_t=db_t.astype(np.int64),
                    looked_up=looked_up)


_per_thread = threading.local()


@contextlib.contextmanager
def _flagged(uniq: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A flag per possible hash, raised for ``uniq`` while the block runs, and each flagged hash's index in
    ``uniq``: membership and position by one gather each (a binary search per decoded posting cost more
    than decoding it). One pair of tables per thread, 10 MB; a position is read only where its flag is up."""
    flags = getattr(_per_thread, "flags", None)
    if flags is None:
        flags = _per_thread.flags = np.zeros(1 << HASH_BITS, bool)
        _per_thread.position = np.zeros(1 << HASH_BITS, np.int32)
    position = _per_thread.position
    flags[uniq] = True
    position[uniq] = np.arange(uniq.size, dtype=np.int32)
    try:
        yield flags, position
    finally:
        flags[uniq] = False
