"""What the engine searches: a ``Catalogue`` of episodes, and the ``Postings`` a lookup returns.

The engine votes on postings and names the winner; how postings are stored (LMDB shards, legacy
pickles) is the store's business. Anything with these few members can be identified against.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import FingerprintParams


@dataclass(frozen=True)
class Postings:
    """Matches of a query: for each hit, the query time, episode slot and stored time."""

    query_t: np.ndarray  # int64 frames
    slot: np.ndarray  # int64
    db_t: np.ndarray  # int64 frames
    looked_up: int  # distinct hashes looked up

    @functools.cached_property
    def offset(self) -> np.ndarray:
        """Where each hit puts the clip's start in its episode (frames): what voting counts."""
        return self.db_t - self.query_t

    def joined(self, other: Postings) -> Postings:
        """Both lookups' hits as one (two halves of a clip's hashes)."""
        return Postings(np.concatenate([self.query_t, other.query_t]), np.concatenate([self.slot, other.slot]),
                        np.concatenate([self.db_t, other.db_t]), self.looked_up + other.looked_up)


class Entry(Protocol):
    """An episode as the answer names it."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...


class Catalogue(Protocol):
    """The episodes of one served version, searched by hash."""

    @property
    def params(self) -> FingerprintParams: ...

    @property
    def version(self) -> str: ...

    def lookup(self, hashes: Hashes) -> Postings:
        """Every posting of these hashes, in every season; slots are global (see ``entry``)."""
        ...

    def lookup_near(self, hashes: Hashes, slots: Collection[int]) -> Postings:
        """``lookup`` in the seasons holding these global slots alone (a second look, where a first found
        candidates); slots as ``lookup``'s."""
        ...

    def lookup_triplets(self, hashes: Hashes) -> Postings:
        """Every triplet posting (matcher/engine/triplets.py) of these hashes, slots as ``lookup``'s, each
        posting's ``db_t`` its stored value; none for a catalogue without triplets."""
        ...

    def entry(self, slot: int) -> tuple[int, Entry] | None:
        """The season and episode of a global slot from ``lookup``; None if it holds none."""
        ...

    def shared_label(self, season: int, episode_id: str, start: float, end: float, slack: float) -> str | None:
        """What the shared audio at ``start``-``end`` of this episode is, if a segment is recorded."""
        ...
