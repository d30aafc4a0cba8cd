"""Reading a season shard: its records, its postings table (viewed in place in the memory map, or
pinned once for a served version), its shared segments, and a recount that checks it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import lmdb
import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.store.season import MAX_POSTINGS, Episode, Query, lookup_seasons
from citywok.matcher.store.shardtable import (
    FORMAT,
    READABLE_VERSIONS,
    TIME_BITS,
    TRIPLET_VALUE_BITS,
    PackedTable,
    ShardError,
    distinct,
    parse_layout,
    split_keys,
    table_keys,
)

from citywok.layout import DATA_FILE
from citywok.lmdbfile import still_whole

_EMPTY = (np.zeros(0, np.uint32),) * 3


class ShardReader:
    """One season's LMDB environment, opened once per process (LMDB forbids opening it twice): the
    read side, which :class:`~citywok.matcher.store.shard.Shard` opens and extends with writing."""

    def __init__(self, path: Path, env: lmdb.Environment, writable: bool, hold: int = -1) -> None:
        self.path = path
        self._hold = hold  # a shared lock on HOLDERS_LOCK while open: compaction waits for none
        self.env = env
        self.writable = writable
        self._write_lock = threading.Lock()
        self._meta_db = env.open_db(b"meta", create=writable)
        self._episodes_db = env.open_db(b"episodes", create=writable)
        self._ids_db = env.open_db(b"ids", create=writable)
        self._postings_db = env.open_db(b"postings", create=writable)
        self._shared_db = _optional_db(env, b"shared", writable)  # None: written before shared segments
        self._triplets_db = _optional_db(env, b"triplets", writable)  # None: written before triplets
        self._pinned: tuple[lmdb.Transaction, PackedTable | None, PackedTable | None] | None = None
        self._fd = os.open(path / DATA_FILE, os.O_RDONLY)  # to see the file shrink under the mapping

    def intact(self) -> str | None:
        """None while the file is still as long as its header needs and still in its folder, else why
        not. Checked before lookups: a mapping of a file truncated meanwhile dies of SIGBUS when read."""
        why = still_whole(self._fd)
        if why is None and not (self.path / DATA_FILE).exists():
            why = "its data.mdb was removed"
        return why

    def pin(self) -> None:
        """Keep one read snapshot open and its table parsed, for a shard nothing writes to any more
        (a served version): queries then skip a transaction and the parsing of the offsets each."""
        if self._pinned is None:
            txn = self.env.begin(buffers=True)
            self._pinned = (txn, self._packed(txn), self._packed(txn, triplets=True))

    def close(self) -> None:
        if self._pinned is not None:
            self._pinned[0].abort()
            self._pinned = None
        self.env.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._hold >= 0:
            os.close(self._hold)  # drops the lock
            self._hold = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_meta(self, meta: dict[str, Any], params: FingerprintParams | None) -> None:
        if meta.get("format") != FORMAT or meta.get("format_version") not in READABLE_VERSIONS:
            raise ShardError(f"unsupported shard format {meta.get('format')!r} v{meta.get('format_version')}")
        if params is not None and meta.get("params_digest") != params.digest():
            theirs = meta.get("params", {})
            diff = {k: (theirs.get(k), v) for k, v in params.to_dict().items() if theirs.get(k) != v}
            raise ShardError(
                "built with other fingerprint parameters (shard, expected): "
                + ", ".join(f"{k}={a}/{b}" for k, (a, b) in sorted(diff.items()))
                + "; re-ingest the season with this version"
            )

    def meta(self) -> dict[str, Any]:
        meta = self._stored_meta()
        if meta is None:
            raise ShardError("no metadata record (half-written or not a CityWok shard)")
        return meta

    def _stored_meta(self) -> dict[str, Any] | None:
        with self.env.begin(db=self._meta_db) as txn:
            raw = txn.get(b"meta")
        if raw is None:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            raise ShardError("the metadata record is not JSON: damaged") from None
        if not isinstance(meta, dict):
            raise ShardError("the metadata record is not a JSON object: damaged")
        return meta

    @property
    def params(self) -> FingerprintParams:
        return FingerprintParams.from_dict(self.meta()["params"])

    def episodes(self) -> list[Episode]:
        out = []
        with self.env.begin(db=self._episodes_db) as txn:
            for k, v in txn.cursor():
                d = json.loads(v)
                out.append(_episode(int.from_bytes(k, "big"), d))
        return out

    def episode(self, episode_id: str) -> Episode | None:
        with self.env.begin() as txn:
            slot = txn.get(episode_id.encode(), db=self._ids_db)
            if slot is None:
                return None
            d = record_json(txn.get(slot, db=self._episodes_db))
        return _episode(int.from_bytes(slot, "big"), d)

    def lookup(self, hashes: Hashes, max_postings: int = MAX_POSTINGS) -> Postings:
        """Every stored posting of the query's hashes, paired with each query time of that hash.

        A hash whose bucket holds more than ``max_postings`` postings carries no evidence worth its
        cost and is skipped.
        """
        return lookup_seasons([self], hashes, max_postings)

    def find_postings(self, query: Query, max_postings: int = MAX_POSTINGS, triplets: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored postings of the query's hashes as (hash, slot, frame), skipping every group of
        2**GROUP_BITS neighbouring hashes that holds more than ``max_postings`` postings (from the offsets,
        undecoded: a layout's bucket is a crowding group or a part of one, Layout.from_bytes insists).
        ``triplets``: from the triplet table, whose frames are values (none if the shard has no triplets)."""
        with self._snapshot(triplets) as table:
            return _EMPTY if table is None else table.find(query.distinct, query.wanted, max_postings)

    @contextlib.contextmanager
    def _snapshot(self, triplets: bool = False) -> Iterator[PackedTable | None]:
        """The table to read: the pinned one, or one viewed in a read transaction for the block."""
        if self._pinned is not None:
            _, pairs, trips = self._pinned
            yield trips if triplets else pairs
            return
        with self.env.begin(buffers=True) as txn:
            yield self._packed(txn, triplets)

    def _packed(self, txn: lmdb.Transaction, triplets: bool = False) -> PackedTable | None:
        """This snapshot's postings (or triplet) table, viewed in place (valid while ``txn`` is); None when
        empty or absent."""
        db = self._triplets_db if triplets else self._postings_db
        raw = None if db is None else txn.get(b"layout", db=db)
        if raw is None:
            return None
        bits = TRIPLET_VALUE_BITS if triplets else TIME_BITS
        return PackedTable.view(parse_layout(bytes(raw), bits), txn.get(b"offsets", db=db), txn.get(b"data", db=db))

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of the shard as (hash, slot, frame) arrays: for season-wide analyses."""
        with self.env.begin(buffers=True) as txn:
            return split_keys(self._table(txn))

    def _table(self, txn: lmdb.Transaction) -> np.ndarray:
        """The whole postings table of this transaction's snapshot, as sorted keys."""
        table = self._packed(txn)
        return np.zeros(0, np.uint64) if table is None else table_keys(*table.decode())

    def all_triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored triplet as (hash, slot, value) arrays, sorted by hash, slot, value."""
        with self.env.begin(buffers=True) as txn:
            return self._triplet_columns(txn)

    def _triplet_columns(self, txn: lmdb.Transaction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = self._packed(txn, triplets=True)
        if table is None:
            return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint64)
        h, slot, value = table.decode()
        return h, slot, value.astype(np.uint64)

    def shared_recorded(self) -> bool:
        """Whether shared segments were ever stored (an empty list is a finding too)."""
        if self._shared_db is None:
            return False
        with self.env.begin(db=self._shared_db) as txn:
            return txn.get(b"segments") is not None

    def get_shared(self) -> list[dict[str, Any]]:
        if self._shared_db is None:
            return []
        with self.env.begin(db=self._shared_db) as txn:
            raw = txn.get(b"segments")
        return json.loads(raw) if raw else []

    def shared_covers(self) -> dict[str, str] | None:
        """The episodes (id -> sha256) the stored shared segments were found over; None if unrecorded."""
        if self._shared_db is None:
            return None
        with self.env.begin(db=self._shared_db) as txn:
            raw = txn.get(b"covered")
        return json.loads(raw) if raw else None


    def check(self) -> dict[str, Any]:
        """Recount hashes, postings and triplets and compare with the metadata record (used by validate and
        tests)."""
        meta = self.meta()
        problems = []
        with self.env.begin(buffers=True) as txn:
            try:
                keys = self._table(txn)
                _th, tslot, _tv = self._triplet_columns(txn)
            except ShardError as e:
                keys, tslot = np.zeros(0, np.uint64), np.zeros(0, np.uint32)
                problems.append(str(e))
        if keys.size and np.any(keys[1:] < keys[:-1]):
            problems.append("postings are out of order")
        h, slot, _ = split_keys(keys)
        episodes = self.episodes()
        held = [e.slot for e in episodes]
        if keys.size and not np.isin(np.unique(slot), held).all():
            problems.append("postings name an episode slot the shard does not hold")
        if tslot.size and not np.isin(np.unique(tslot), held).all():
            problems.append("triplets name an episode slot the shard does not hold")
        hash_count, postings = distinct(h), int(keys.size)
        ok = not problems and (hash_count, postings, len(episodes), int(tslot.size)) == (
            meta["hash_count"], meta["posting_count"], meta["episode_count"], meta.get("triplet_count", 0))
        return {"ok": ok, "hash_count": hash_count, "posting_count": postings, "episode_count": len(episodes),
                "problems": problems, "meta": meta}

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.name == DATA_FILE)


def _episode(slot: int, d: dict[str, Any]) -> Episode:
    return Episode(slot, d["id"], d.get("title", d["id"]), d["duration"], d["sha256"], d["hashes"], d.get("triplets"))


def _optional_db(env: lmdb.Environment, name: bytes, writable: bool) -> Any:
    """A named database a shard of an older kind lacks: None when it is not there and cannot be made."""
    try:
        return env.open_db(name, create=writable)
    except lmdb.NotFoundError:
        return None


def record_json(raw: Any) -> Any:
    """A record the shard's own bookkeeping guarantees (a slot's episode, the metadata)."""
    if raw is None:
        raise ShardError("a record is missing (damaged shard)")
    return json.loads(bytes(raw))

