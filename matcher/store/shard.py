"""The season shard: one LMDB environment per season (``season_NN.lmdb``), opened, created and
written here. Its format and postings codec are in shardtable.py, the read side in shardread.py, its
locks and compaction in shardfiles.py; this module's names are the ones the rest of CityWok imports.

Every change (one episode, or a batch from ``add_episodes``) is one write transaction that rewrites the
table: a crash mid-write leaves the shard as it was before that change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.triplets import Triplets
from citywok.matcher.store.season import GROUP_BITS, MAX_SLOTS, Episode, NewEpisode
from citywok.matcher.store.shardfiles import (
    MAP_SIZE,
    check_shard_file,
    compact,
    dir_writable,
    hold_lock,
    lmdb_reason,
    release_lock,
    repack,
)
from citywok.matcher.store.shardread import ShardReader, record_json
from citywok.matcher.store.shardtable import (
    FORMAT,
    FORMAT_VERSION,
    KEY_HASH_SHIFT,
    KEY_SLOT_SHIFT,
    MAX_FRAME,
    PAD,
    Layout,
    ShardError,
    distinct,
    pack_columns,
    pack_table,
    split_keys,
    table_keys,
    unpack_table,
)

from citywok.layout import DATA_FILE

__all__ = ["FORMAT", "FORMAT_VERSION", "GROUP_BITS", "MAX_FRAME", "PAD", "Layout", "NewEpisode", "Shard",
           "ShardError", "compact", "pack_table", "repack", "split_keys", "table_keys", "unpack_table"]


@dataclass(frozen=True)
class _Columns:
    """A triplet table as (hash, slot, value) columns: its values are wider than a sortable key holds."""

    hash: np.ndarray
    slot: np.ndarray
    value: np.ndarray

    def without(self, slot: int) -> _Columns:
        keep = self.slot != slot
        return _Columns(self.hash[keep], self.slot[keep], self.value[keep])

    @staticmethod
    def concat(parts: list[_Columns]) -> _Columns:
        return _Columns(*(np.concatenate([getattr(p, k) for p in parts]).astype(dt)
                          for k, dt in (("hash", np.uint32), ("slot", np.uint32), ("value", np.uint64))))


def _slot_key(slot: int) -> bytes:
    return slot.to_bytes(2, "big")


class Shard(ShardReader):
    """A season shard opened for reading (:meth:`open`) or writing (:meth:`create`, ``writable``)."""

    @classmethod
    def create(cls, path: Path, params: FingerprintParams, season: int) -> Shard:
        """Open for writing, creating an empty shard with these parameters if there is none."""
        path = Path(path)
        new = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            if (path / DATA_FILE).exists() and (path / DATA_FILE).stat().st_size:
                check_shard_file(path)
            hold = hold_lock(path, fcntl.LOCK_SH)
        except OSError as e:
            raise ShardError(f"{path}: cannot create the season folder ({e.strerror})") from None
        try:
            env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=8, subdir=True)
        except lmdb.Error as e:
            release_lock(hold)
            if new:  # a half-made folder would be a damaged season to every reader
                shutil.rmtree(path, ignore_errors=True)
            raise ShardError(f"{path}: cannot open LMDB environment ({lmdb_reason(e)})") from None
        shard = cls(path, env, writable=True, hold=hold)
        try:
            existing = shard._stored_meta()
            if existing is None:
                meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "params": params.to_dict(),
                        "params_digest": params.digest(), "season": season, "hash_count": 0,
                        "posting_count": 0, "episode_count": 0, "total_seconds": 0.0, "triplet_count": 0}
                with env.begin(write=True) as txn:
                    txn.put(b"meta", json.dumps(meta).encode(), db=shard._meta_db)
            else:
                shard._check_meta(existing, params)
        except (lmdb.Error, ShardError) as e:
            shard.close()
            if new:
                shutil.rmtree(path, ignore_errors=True)
            why = lmdb_reason(e) if isinstance(e, lmdb.Error) else str(e)
            raise ShardError(f"{path}: {why}") from None
        return shard

    @classmethod
    def open(cls, path: Path, params: FingerprintParams | None = None, writable: bool = False,
             pin: bool = False) -> Shard:
        """Open an existing shard; refuse it if it was built with parameters other than ``params``.
        ``pin``: read-only and never written again while open (see :meth:`pin`)."""
        path = Path(path)
        if not (path / DATA_FILE).is_file():
            raise ShardError(f"{path}: not a season shard (no data.mdb)")
        hold = hold_lock(path, fcntl.LOCK_SH)
        try:
            check_shard_file(path)
            if writable:
                env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=8, subdir=True, create=False)
            else:
                # A read-only volume cannot hold a lock file; readers then rely on no writer existing.
                lock = dir_writable(path)
                env = lmdb.open(str(path), readonly=True, lock=lock, max_dbs=8, subdir=True,
                                create=False, readahead=False, max_readers=512)
        except lmdb.Error as e:
            release_lock(hold)
            raise ShardError(f"{path}: cannot open LMDB environment ({e})") from None
        except ShardError:
            release_lock(hold)
            raise
        shard = None
        try:
            shard = cls(path, env, writable=writable, hold=hold)
            shard._check_meta(shard.meta(), params)
            if pin and not writable:
                shard.pin()
        except (lmdb.Error, ShardError, ValueError, OSError) as e:
            if shard is not None:
                shard.close()
            else:
                env.close()
                release_lock(hold)
            raise ShardError(f"{path}: {e}") from None
        return shard

    # -- writing -------------------------------------------------------------------------------

    def put_shared(self, segments: list[dict[str, Any]]) -> None:
        if not self.writable or self._shared_db is None:
            raise ShardError("shard is open read-only")
        with self._writing() as txn:
            txn.put(b"segments", json.dumps(segments).encode(), db=self._shared_db)

    def put_shared_covers(self, covered: dict[str, str]) -> None:
        if not self.writable or self._shared_db is None:
            raise ShardError("shard is open read-only")
        with self._writing() as txn:
            txn.put(b"covered", json.dumps(covered, sort_keys=True).encode(), db=self._shared_db)

    def add_episode(
        self, episode_id: str, hashes: Hashes, duration: float, sha256: str, title: str | None = None,
        triplets: Triplets | None = None,
    ) -> Episode:
        """Add (or replace) one episode in a single transaction."""
        return self.add_episodes([NewEpisode(episode_id, hashes, duration, sha256, title, triplets)])[0]

    def add_episodes(self, new: Sequence[NewEpisode]) -> list[Episode]:
        """Add (or replace) several episodes in one transaction, rewriting the table once for all.

        The table is rewritten on every transaction, so a batch costs about what one episode does.
        """
        if not self.writable:
            raise ShardError("shard is open read-only")
        for n in new:
            if len(n.hashes) and int(n.hashes.t.max()) > MAX_FRAME:
                raise ShardError(f"{n.id}: longer than a shard can index ({MAX_FRAME} frames)")
        added: list[Episode] = []
        with self._writing() as txn:
            meta = record_json(txn.get(b"meta", db=self._meta_db))
            table = self._table(txn)
            trip = _Columns(*self._triplet_columns(txn))
            parts: dict[int, np.ndarray] = {}  # this batch's postings by slot
            tparts: dict[int, _Columns] = {}  # ... and triplets
            for n in new:
                old = txn.get(n.id.encode(), db=self._ids_db)
                if old is not None:
                    old_slot = int.from_bytes(old, "big")
                    self._forget(txn, meta, old_slot, n.id)
                    table = table[((table >> np.uint64(KEY_SLOT_SHIFT)) & np.uint64(MAX_SLOTS - 1))
                                  != np.uint64(old_slot)]
                    trip = trip.without(old_slot)
                    parts.pop(old_slot, None)
                    tparts.pop(old_slot, None)
                slot = self._free_slot(txn)
                ep = Episode(slot, n.id, n.title or n.id, float(n.duration), n.sha256, len(n.hashes),
                             None if n.triplets is None else len(n.triplets))
                txn.put(_slot_key(slot), json.dumps(ep.to_json()).encode(), db=self._episodes_db)
                txn.put(n.id.encode(), _slot_key(slot), db=self._ids_db)
                parts[slot] = np.sort(table_keys(n.hashes.hash, slot, n.hashes.t))
                if n.triplets is not None:
                    tparts[slot] = _Columns(n.triplets.hash, np.full(len(n.triplets), slot, np.uint32),
                                            n.triplets.value)
                meta["episode_count"] += 1
                meta["total_seconds"] = round(meta["total_seconds"] + float(n.duration), 3)
                added.append(ep)
            self._put_table(txn, meta, np.sort(np.concatenate([table, *parts.values()]), kind="stable"))
            self._put_triplets(txn, meta, _Columns.concat([trip, *tparts.values()]))
            txn.put(b"meta", json.dumps(meta).encode(), db=self._meta_db)
        return added

    def set_title(self, episode_id: str, title: str) -> bool:
        """Rename an episode without touching its postings; False if it is not there."""
        if not self.writable:
            raise ShardError("shard is open read-only")
        with self._write_lock, self.env.begin(write=True) as txn:
            slot = txn.get(episode_id.encode(), db=self._ids_db)
            if slot is None:
                return False
            d = record_json(txn.get(slot, db=self._episodes_db))
            txn.put(slot, json.dumps({**d, "title": title}).encode(), db=self._episodes_db)
        return True

    def remove_episode(self, episode_id: str) -> bool:
        """Remove an episode and all its postings in one transaction; False if it is not there."""
        if not self.writable:
            raise ShardError("shard is open read-only")
        with self._writing() as txn:
            old = txn.get(episode_id.encode(), db=self._ids_db)
            if old is None:
                return False
            meta = record_json(txn.get(b"meta", db=self._meta_db))
            slot = int.from_bytes(old, "big")
            self._forget(txn, meta, slot, episode_id)
            table = self._table(txn)
            self._put_table(txn, meta, table[((table >> np.uint64(KEY_SLOT_SHIFT)) & np.uint64(MAX_SLOTS - 1))
                                             != np.uint64(slot)])
            self._put_triplets(txn, meta, _Columns(*self._triplet_columns(txn)).without(slot))
            txn.put(b"meta", json.dumps(meta).encode(), db=self._meta_db)
        return True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[lmdb.Transaction]:
        """One write transaction; an LMDB failure (a full disk, most often) is a ShardError that says
        so, and the shard stays as it was before the transaction."""
        with self._write_lock:
            try:
                with self.env.begin(write=True) as txn:
                    yield txn
            except lmdb.Error as e:
                raise ShardError(f"{self.path.name}: the write failed ({lmdb_reason(e)}); nothing was changed"
                                 ) from None

    def _free_slot(self, txn: lmdb.Transaction) -> int:
        used = {int.from_bytes(k, "big") for k, _ in txn.cursor(db=self._episodes_db)}
        for s in range(MAX_SLOTS):
            if s not in used:
                return s
        raise ShardError(f"a season holds at most {MAX_SLOTS} episodes")

    def _put_table(self, txn: lmdb.Transaction, meta: dict[str, Any], keys: np.ndarray) -> None:
        """Store a whole postings table (sorted keys) under a layout fitted to it; count it in ``meta``."""
        db = self._postings_db
        if keys.size == 0:
            for k in (b"layout", b"offsets", b"data"):
                txn.delete(k, db=db)
        else:
            layout, offsets, data = pack_table(keys)
            txn.put(b"layout", layout.to_bytes(), db=db)
            txn.put(b"offsets", offsets, db=db)
            txn.put(b"data", data, db=db)
            meta["layout"] = {"low_bits": layout.low_bits, "slot_bits": layout.slot_bits,
                              "frame_bits": layout.frame_bits}
        meta["format_version"] = FORMAT_VERSION  # a table packed now (this one and the triplets' always go
        # together) may narrow its buckets: format 4
        meta["hash_count"] = distinct(keys >> np.uint64(KEY_HASH_SHIFT))
        meta["posting_count"] = int(keys.size)

    def _put_triplets(self, txn: lmdb.Transaction, meta: dict[str, Any], cols: _Columns) -> None:
        """Store the whole triplet table (sorted here) and count it in ``meta``."""
        db = self._triplets_db
        if cols.hash.size == 0:
            for k in (b"layout", b"offsets", b"data"):
                txn.delete(k, db=db)
        else:
            order = np.lexsort((cols.value, cols.slot, cols.hash))
            layout, offsets, data = pack_columns(cols.hash[order], cols.slot[order], cols.value[order])
            txn.put(b"layout", layout.to_bytes(), db=db)
            txn.put(b"offsets", offsets, db=db)
            txn.put(b"data", data, db=db)
        meta["triplet_count"] = int(cols.hash.size)

    def _forget(self, txn: lmdb.Transaction, meta: dict[str, Any], slot: int, episode_id: str) -> None:
        """Drop an episode's records (its postings go with the next ``_put_table``)."""
        d = record_json(txn.get(_slot_key(slot), db=self._episodes_db))
        txn.delete(_slot_key(slot), db=self._episodes_db)
        txn.delete(episode_id.encode(), db=self._ids_db)
        meta["episode_count"] -= 1
        meta["total_seconds"] = round(max(0.0, meta["total_seconds"] - float(d["duration"])), 3)

