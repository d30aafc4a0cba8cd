"""A season shard's summary, read from its LMDB file: the part of the shard format others may read.

The fetcher verifies what it unpacked, and pack describes what it packs, by this summary alone; both
stay independent of the matcher's store (matcher/store/shardtable.py owns the format, shard.py writes it). The
shard keeps three named databases this reads: ``meta`` (one JSON record: counts, parameters),
``episodes`` (slot -> JSON {id, title, duration, ...}) and ``postings`` (whose key count is checked).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from citywok.errors import CityWokError
from citywok.layout import DATA_FILE, SeasonEntry, season_name
from citywok.lmdbfile import LmdbFileError, check_file

META_DB, EPISODES_DB, POSTINGS_DB = b"meta", b"episodes", b"postings"
META_KEY = b"meta"


class ShardFileError(CityWokError):
    """The folder is not a readable season shard (missing, damaged, or half-written)."""

    code = "bad_shard_file"


@dataclass(frozen=True)
class ShardSummary:
    """What a shard holds, as its manifest entry says it and verification compares it."""

    season: int | None
    hash_count: int
    posting_count: int
    episode_count: int  # the meta record's count (verification compares it with the manifest's)
    episodes: tuple[str, ...]  # sorted ids
    titles: Mapping[str, str] = field(default_factory=dict)  # id -> title, where they differ
    seconds: float = 0.0
    params: Mapping[str, Any] = field(default_factory=dict)
    params_digest: str | None = None
    postings_entries: int | None = None  # keys of the postings table (None: not read)

    def entry(self, season: int) -> SeasonEntry:
        """The manifest entry of this shard as season ``season`` (archive fields are pack's to add)."""
        return SeasonEntry(season=season, name=season_name(season), hash_count=self.hash_count,
                           posting_count=self.posting_count, episode_count=self.episode_count,
                           episodes=self.episodes, titles=dict(self.titles), seconds=self.seconds)


def summarize(meta: Mapping[str, Any], episodes: Iterable[tuple[str, str | None, float]],
              postings_entries: int | None = None) -> ShardSummary:
    """A summary from a shard's meta record and its episodes (id, title, duration): one construction
    for a shard read here and for one the matcher has open (LMDB allows one open per process)."""
    eps = sorted(episodes)
    return ShardSummary(
        season=meta.get("season"), hash_count=int(meta["hash_count"]),
        posting_count=int(meta.get("posting_count", 0)), episode_count=int(meta.get("episode_count", len(eps))),
        episodes=tuple(e[0] for e in eps), titles={e[0]: e[1] for e in eps if e[1] and e[1] != e[0]},
        seconds=round(sum(float(e[2]) for e in eps), 3), params=dict(meta.get("params") or {}),
        params_digest=meta.get("params_digest"), postings_entries=postings_entries)


def shard_summary(path: Path) -> ShardSummary:
    """Read a shard folder's summary, its ``data.mdb`` checked first (mapping a truncated file is a SIGBUS)."""
    path = Path(path)
    if not (path / DATA_FILE).is_file():
        raise ShardFileError(f"{path}: not a season shard (no {DATA_FILE})")
    try:
        check_file(path / DATA_FILE)
    except LmdbFileError as e:
        raise ShardFileError(f"{path}: damaged {DATA_FILE} ({e})") from None
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=4, subdir=True, create=False)
    except lmdb.Error as e:
        raise ShardFileError(f"{path}: cannot open LMDB environment ({e})") from None
    try:
        meta_db, episodes_db, postings_db = (env.open_db(n, create=False) for n in (META_DB, EPISODES_DB, POSTINGS_DB))
        with env.begin() as txn:
            raw = txn.get(META_KEY, db=meta_db)
            if raw is None:
                raise ShardFileError(f"{path}: no meta record (half-written or not a CityWok shard)")
            records = [json.loads(v) for _k, v in txn.cursor(db=episodes_db)]
            episodes = [(str(d["id"]), d.get("title"), float(d.get("duration", 0.0))) for d in records]
            return summarize(json.loads(raw), episodes, txn.stat(postings_db)["entries"])
    except (lmdb.Error, ValueError, TypeError, KeyError) as e:
        raise ShardFileError(f"{path}: damaged LMDB environment ({e})") from None
    finally:
        env.close()
