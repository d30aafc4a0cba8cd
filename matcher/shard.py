"""The season shard: one LMDB environment per season (``season_NN.lmdb``). The one place its format lives.

Named databases:
    meta      b"meta" -> JSON {format, format_version, params, params_digest, season, hash_count,
                               posting_count, episode_count, total_seconds}
    episodes  uint16 BE episode slot -> JSON {id, title, duration, sha256, hashes}
    ids       episode id (utf-8) -> uint16 BE slot
    shared    b"segments" -> JSON list of shared segments (matcher/shared.py)
    postings  uint32 BE bucket (hash >> 3) -> packed little-endian uint32 postings,
              (hash & 7) << 29 | slot << 19 | frame

Hashes share a bucket key eight to one, with the three low hash bits kept in each posting: LMDB spends
about 20 bytes on every key, so fewer, fuller keys make the shard several times smaller, and lookups
filter a bucket's postings by those bits. Keys sort numerically, so a sorted batch of query hashes
walks the B-tree in order. Every change is one write transaction: a crash mid-ingest leaves the shard
as it was before that episode. Limits: 1,024 episodes per season, 2.3 hours per episode.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from matcher.landmarks import Hashes
from matcher.params import FingerprintParams

FORMAT = "citywok-season-shard"
FORMAT_VERSION = 2
LOW_BITS = 3
SLOT_BITS = 10
TIME_BITS = 19
MAX_SLOTS = 1 << SLOT_BITS
MAX_FRAME = (1 << TIME_BITS) - 1
TIME_MASK = np.uint32(MAX_FRAME)
SLOT_MASK = np.uint32(MAX_SLOTS - 1)
LOW_MASK = np.uint32((1 << LOW_BITS) - 1)
LOW_SHIFT = np.uint32(SLOT_BITS + TIME_BITS)
MAP_SIZE = 1 << 36  # address space only; the file grows with the data
MAX_POSTINGS = 1024  # per bucket; beyond it a hash is too common to be evidence


class ShardError(Exception):
    """The shard is missing, damaged, or was built with other parameters."""


@dataclass(frozen=True)
class Episode:
    slot: int
    id: str
    title: str
    duration: float
    sha256: str
    hashes: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "duration": self.duration, "sha256": self.sha256,
                "hashes": self.hashes}


@dataclass(frozen=True)
class Postings:
    """Matches of a query against one shard: for each hit, the query time, episode slot and stored time."""

    query_t: np.ndarray  # int64 frames
    slot: np.ndarray  # int64
    db_t: np.ndarray  # int64 frames
    looked_up: int  # distinct hashes looked up


def _slot_key(slot: int) -> bytes:
    return slot.to_bytes(2, "big")


class Shard:
    """One season's LMDB environment, opened once per process (LMDB forbids opening it twice)."""

    def __init__(self, path: Path, env: lmdb.Environment, writable: bool) -> None:
        self.path = path
        self.env = env
        self.writable = writable
        self._write_lock = threading.Lock()
        self._meta_db = env.open_db(b"meta", create=writable)
        self._episodes_db = env.open_db(b"episodes", create=writable)
        self._ids_db = env.open_db(b"ids", create=writable)
        self._postings_db = env.open_db(b"postings", create=writable)
        try:
            self._shared_db = env.open_db(b"shared", create=writable)
        except lmdb.NotFoundError:  # a shard written before shared segments were recorded
            self._shared_db = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, params: FingerprintParams, season: int) -> Shard:
        """Open for writing, creating an empty shard with these parameters if there is none."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=5, subdir=True)
        shard = cls(path, env, writable=True)
        existing = shard.meta(missing_ok=True)
        if existing is None:
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "params": params.to_dict(),
                    "params_digest": params.digest(), "season": season, "hash_count": 0,
                    "posting_count": 0, "episode_count": 0, "total_seconds": 0.0}
            with env.begin(write=True) as txn:
                txn.put(b"meta", json.dumps(meta).encode(), db=shard._meta_db)
        else:
            shard._check_meta(existing, params)
        return shard

    @classmethod
    def open(cls, path: Path, params: FingerprintParams | None = None, writable: bool = False) -> Shard:
        """Open an existing shard; refuse it if it was built with parameters other than ``params``."""
        path = Path(path)
        if not (path / "data.mdb").is_file():
            raise ShardError(f"{path}: not a season shard (no data.mdb)")
        try:
            if writable:
                env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=5, subdir=True, create=False)
            else:
                # A read-only volume cannot hold a lock file; readers then rely on no writer existing.
                lock = _dir_writable(path)
                env = lmdb.open(str(path), readonly=True, lock=lock, max_dbs=5, subdir=True,
                                create=False, readahead=False, max_readers=512)
        except lmdb.Error as e:
            raise ShardError(f"{path}: cannot open LMDB environment ({e})") from None
        try:
            shard = cls(path, env, writable=writable)
            meta = shard.meta()
            shard._check_meta(meta, params)
        except (lmdb.Error, ShardError) as e:
            env.close()
            raise ShardError(f"{path}: {e}") from None
        return shard

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_meta(self, meta: dict[str, Any], params: FingerprintParams | None) -> None:
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ShardError(f"unsupported shard format {meta.get('format')!r} v{meta.get('format_version')}")
        if params is not None and meta.get("params_digest") != params.digest():
            theirs = meta.get("params", {})
            diff = {k: (theirs.get(k), v) for k, v in params.to_dict().items() if theirs.get(k) != v}
            raise ShardError(
                "built with other fingerprint parameters (shard, expected): "
                + ", ".join(f"{k}={a}/{b}" for k, (a, b) in sorted(diff.items()))
                + "; re-ingest the season with this version"
            )

    # -- reading -------------------------------------------------------------------------------

    def meta(self, missing_ok: bool = False) -> dict[str, Any] | None:
        with self.env.begin(db=self._meta_db) as txn:
            raw = txn.get(b"meta")
        if raw is None:
            if missing_ok:
                return None
            raise ShardError("no metadata record (half-written or not a CityWok shard)")
        return json.loads(raw)

    @property
    def params(self) -> FingerprintParams:
        return FingerprintParams.from_dict(self.meta()["params"])

    def episodes(self) -> list[Episode]:
        out = []
        with self.env.begin(db=self._episodes_db) as txn:
            for k, v in txn.cursor():
                d = json.loads(v)
                out.append(Episode(int.from_bytes(k, "big"), d["id"], d.get("title", d["id"]),
                                   d["duration"], d["sha256"], d["hashes"]))
        return out

    def episode(self, episode_id: str) -> Episode | None:
        with self.env.begin() as txn:
            slot = txn.get(episode_id.encode(), db=self._ids_db)
            if slot is None:
                return None
            d = json.loads(txn.get(slot, db=self._episodes_db))
        return Episode(int.from_bytes(slot, "big"), d["id"], d.get("title", d["id"]), d["duration"],
                       d["sha256"], d["hashes"])

    def lookup(self, hashes: Hashes, max_postings: int = MAX_POSTINGS) -> Postings:
        """Every stored posting of the query's hashes, paired with each query time of that hash.

        A hash whose bucket holds more than ``max_postings`` postings carries no evidence worth its
        cost and is skipped.
        """
        return lookup_seasons([self], hashes, max_postings)

    def read_buckets(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored blocks of these (sorted) bucket keys: found keys, postings per key, postings."""
        with self.env.begin(db=self._postings_db, buffers=True) as txn:
            found = txn.cursor().getmulti(_keys(buckets))
            if not found:
                return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.uint32)
            keys, values = zip(*found, strict=True)  # C-level passes: a query finds hundreds of buckets
            return (np.frombuffer(b"".join(keys), dtype=">u4").astype(np.uint32),
                    np.fromiter(map(len, values), np.int64, len(values)) >> 2,
                    np.frombuffer(b"".join(values), dtype="<u4").copy())

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of the shard as (hash, slot, frame) arrays: for season-wide analyses."""
        with self.env.begin(db=self._postings_db, buffers=True) as txn:
            items = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
        if not items:
            z = np.zeros(0, np.uint32)
            return z, z, z
        keys = np.frombuffer(b"".join(k for k, _ in items), dtype=">u4").astype(np.uint32)
        sizes = np.fromiter((len(v) >> 2 for _, v in items), np.int64, len(items))
        flat = np.frombuffer(b"".join(v for _, v in items), dtype="<u4")
        h = (np.repeat(keys, sizes) << np.uint32(LOW_BITS)) | (flat >> LOW_SHIFT)
        return h, (flat >> np.uint32(TIME_BITS)) & SLOT_MASK, flat & TIME_MASK

    def get_shared(self) -> list[dict[str, Any]]:
        if self._shared_db is None:
            return []
        with self.env.begin(db=self._shared_db) as txn:
            raw = txn.get(b"segments")
        return json.loads(raw) if raw else []

    def put_shared(self, segments: list[dict[str, Any]]) -> None:
        if not self.writable or self._shared_db is None:
            raise ShardError("shard is open read-only")
        with self._write_lock, self.env.begin(write=True) as txn:
            txn.put(b"segments", json.dumps(segments).encode(), db=self._shared_db)

    def check(self) -> dict[str, Any]:
        """Recount hashes and postings and compare with the metadata record (used by validate and tests)."""
        meta = self.meta()
        keys = postings = 0
        with self.env.begin(db=self._postings_db, buffers=True) as txn:
            for _k, v in txn.cursor():
                keys += _distinct_hashes(v)
                postings += len(v) // 4
        episodes = len(self.episodes())
        ok = (keys, postings, episodes) == (meta["hash_count"], meta["posting_count"], meta["episode_count"])
        return {"ok": ok, "hash_count": keys, "posting_count": postings, "episode_count": episodes, "meta": meta}

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.name == "data.mdb")

    # -- writing -------------------------------------------------------------------------------

    def add_episode(
        self, episode_id: str, hashes: Hashes, duration: float, sha256: str, title: str | None = None
    ) -> Episode:
        """Add (or replace) one episode in a single transaction."""
        if not self.writable:
            raise ShardError("shard is open read-only")
        if len(hashes) and int(hashes.t.max()) > MAX_FRAME:
            raise ShardError(f"{episode_id}: longer than a shard can index ({MAX_FRAME} frames)")
        with self._write_lock, self.env.begin(write=True) as txn:
            meta = json.loads(txn.get(b"meta", db=self._meta_db))
            old = txn.get(episode_id.encode(), db=self._ids_db)
            if old is not None:
                self._remove_in(txn, meta, int.from_bytes(old, "big"), episode_id)
            slot = self._free_slot(txn)
            ep = Episode(slot, episode_id, title or episode_id, float(duration), sha256, len(hashes))
            txn.put(_slot_key(slot), json.dumps(ep.to_json()).encode(), db=self._episodes_db)
            txn.put(episode_id.encode(), _slot_key(slot), db=self._ids_db)
            new_keys, n_post = self._merge_postings(txn, slot, hashes)
            meta["hash_count"] += new_keys
            meta["posting_count"] += n_post
            meta["episode_count"] += 1
            meta["total_seconds"] = round(meta["total_seconds"] + float(duration), 3)
            txn.put(b"meta", json.dumps(meta).encode(), db=self._meta_db)
        return ep

    def remove_episode(self, episode_id: str) -> bool:
        """Remove an episode and all its postings in one transaction; False if it is not there."""
        if not self.writable:
            raise ShardError("shard is open read-only")
        with self._write_lock, self.env.begin(write=True) as txn:
            old = txn.get(episode_id.encode(), db=self._ids_db)
            if old is None:
                return False
            meta = json.loads(txn.get(b"meta", db=self._meta_db))
            self._remove_in(txn, meta, int.from_bytes(old, "big"), episode_id)
            txn.put(b"meta", json.dumps(meta).encode(), db=self._meta_db)
        return True

    def _free_slot(self, txn: lmdb.Transaction) -> int:
        used = {int.from_bytes(k, "big") for k, _ in txn.cursor(db=self._episodes_db)}
        for s in range(MAX_SLOTS):
            if s not in used:
                return s
        raise ShardError(f"a season holds at most {MAX_SLOTS} episodes")

    def _merge_postings(self, txn: lmdb.Transaction, slot: int, hashes: Hashes) -> tuple[int, int]:
        if len(hashes) == 0:
            return 0, 0
        order = np.argsort(hashes.hash, kind="stable")
        h = hashes.hash[order]
        vals = (((h & LOW_MASK) << LOW_SHIFT) | (np.uint32(slot) << np.uint32(TIME_BITS))
                | hashes.t[order].astype(np.uint32)).astype("<u4")
        uniq, starts = np.unique(h >> np.uint32(LOW_BITS), return_index=True)
        ends = np.append(starts[1:], h.size)
        key_list = _keys(uniq)
        cur = txn.cursor(db=self._postings_db)
        existing = dict(cur.getmulti(key_list))
        raw = vals.tobytes()
        items = []
        new_hashes = 0
        for i, k in enumerate(key_list):
            block = raw[starts[i] * 4 : ends[i] * 4]
            prev = existing.get(k)
            if prev is None:
                new_hashes += _distinct_hashes(block)
                items.append((k, block))
            else:
                new_hashes += _distinct_hashes(prev + block) - _distinct_hashes(prev)
                items.append((k, prev + block))
        cur.putmulti(items, dupdata=False, overwrite=True)
        return new_hashes, int(h.size)

    def _remove_in(self, txn: lmdb.Transaction, meta: dict[str, Any], slot: int, episode_id: str) -> None:
        d = json.loads(txn.get(_slot_key(slot), db=self._episodes_db))
        removed_keys = removed_post = 0
        cur = txn.cursor(db=self._postings_db)
        updates = []
        deletes = []
        for k, v in cur:
            arr = np.frombuffer(v, dtype="<u4")
            mine = ((arr >> np.uint32(TIME_BITS)) & SLOT_MASK) == slot
            n = int(mine.sum())
            if n:
                removed_post += n
                before = _distinct_hashes(arr)
                if n == arr.size:
                    deletes.append(bytes(k))
                    removed_keys += before
                else:
                    rest = arr[~mine]
                    updates.append((bytes(k), rest.tobytes()))
                    removed_keys += before - _distinct_hashes(rest)
        for k in deletes:
            txn.delete(k, db=self._postings_db)
        if updates:
            txn.cursor(db=self._postings_db).putmulti(updates, overwrite=True)
        txn.delete(_slot_key(slot), db=self._episodes_db)
        txn.delete(episode_id.encode(), db=self._ids_db)
        meta["hash_count"] -= removed_keys
        meta["posting_count"] -= removed_post
        meta["episode_count"] -= 1
        meta["total_seconds"] = round(max(0.0, meta["total_seconds"] - float(d["duration"])), 3)


def repack(env: lmdb.Environment, dst: Path) -> None:
    """Copy every named database of ``env`` into a new environment at ``dst``, appending keys in order.

    Appending fills each B-tree page completely, where a shard grown episode by episode leaves its
    pages about two-thirds full (and ``env.copy(compact=True)`` keeps them so): a third less disk.
    """
    dst.mkdir()
    with env.begin() as txn:
        names = [bytes(k) for k, _ in txn.cursor()]
    out = lmdb.open(str(dst), map_size=MAP_SIZE, max_dbs=len(names) + 1, subdir=True)
    try:
        for name in names:
            src_db = env.open_db(name, create=False)
            dst_db = out.open_db(name)
            with env.begin(db=src_db) as rt, out.begin(write=True, db=dst_db) as wt:
                wt.cursor().putmulti(rt.cursor().iternext(), append=True)
        out.sync(True)
    finally:
        out.close()


def lookup_seasons(shards: list, hashes: Hashes, max_postings: int = MAX_POSTINGS) -> Postings:
    """Look a query up in several seasons at once; season k's slots come back as ``slot + (k << SLOT_BITS)``.

    The LMDB reads are per season, the numpy work is done once over all of them: with 20 seasons,
    per-call overheads would otherwise cost more than the lookups. Shard-likes that are not
    :class:`Shard` (the legacy pickle seasons) answer through their own ``lookup``.
    """
    z = np.zeros(0, np.int64)
    if len(hashes) == 0:
        return Postings(z, z, z, 0)
    uniq, q_inv = hashes.distinct
    buckets = np.unique(uniq >> np.uint32(LOW_BITS))
    keys, sizes, flats, season_of, others = [], [], [], [], []
    for k, shard in enumerate(shards):
        if not isinstance(shard, Shard):
            p = shard.lookup(hashes, max_postings)
            others.append(Postings(p.query_t, p.slot + (k << SLOT_BITS), p.db_t, p.looked_up))
            continue
        fk, sz, flat = shard.read_buckets(buckets)
        keys.append(fk)
        sizes.append(sz)
        flats.append(flat)
        season_of.append(np.full(sz.size, k, np.int64))
    looked_up = int(uniq.size) * (len(shards) - len(others)) + sum(p.looked_up for p in others)
    if keys:
        found_keys, size, flat = np.concatenate(keys), np.concatenate(sizes), np.concatenate(flats)
        season = np.repeat(np.concatenate(season_of), size)
        keep = np.repeat(size <= max_postings, size)  # too common: not worth its cost
        # each posting's full hash: its bucket key and the three low bits it carries
        full = (np.repeat(found_keys, size) << np.uint32(LOW_BITS)) | (flat >> LOW_SHIFT)
        u = np.minimum(np.searchsorted(uniq, full), uniq.size - 1)
        keep &= uniq[u] == full
        post, u, season = flat[keep], u[keep], season[keep]
        # pair each posting with every query time of its hash (usually one)
        order = np.argsort(q_inv, kind="stable")
        q_count = np.bincount(q_inv, minlength=uniq.size)
        q_start = np.cumsum(q_count) - q_count
        reps = q_count[u]
        pi = np.repeat(np.arange(post.size), reps)
        within = np.arange(pi.size) - np.repeat(np.cumsum(reps) - reps, reps)
        qi = order[q_start[u[pi]] + within]
        post, season = post[pi], season[pi]
        others.append(Postings(
            query_t=hashes.t[qi].astype(np.int64),
            slot=((post >> np.uint32(TIME_BITS)) & SLOT_MASK).astype(np.int64) + (season << SLOT_BITS),
            db_t=(post & TIME_MASK).astype(np.int64),
            looked_up=0,
        ))
    if not others:
        return Postings(z, z, z, looked_up)
    return Postings(np.concatenate([p.query_t for p in others]), np.concatenate([p.slot for p in others]),
                    np.concatenate([p.db_t for p in others]), looked_up)


def compact(path: Path) -> int:
    """Rewrite a shard with full pages and no free pages (about half the size after many ingests).

    The repacked file is written beside the live one and renamed over it, so a crash leaves one or
    the other, never half of each. Call with no writer open. Returns the new size in bytes.
    """
    path = Path(path)
    tmp = path / ".compact"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        env = lmdb.open(str(path), readonly=True, max_dbs=5, subdir=True, create=False)
        try:
            repack(env, tmp)
        finally:
            env.close()
        os.replace(tmp / "data.mdb", path / "data.mdb")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (path / "data.mdb").stat().st_size


def _distinct_hashes(block: bytes | np.ndarray) -> int:
    """How many distinct hashes share a bucket: the distinct low bits among its postings."""
    arr = np.frombuffer(block, dtype="<u4") if not isinstance(block, np.ndarray) else block
    return int(np.unique(arr >> LOW_SHIFT).size)


def _keys(buckets: np.ndarray) -> list[bytes]:
    raw = buckets.astype(">u4").tobytes()
    return [raw[i : i + 4] for i in range(0, len(raw), 4)]


def _dir_writable(path: Path) -> bool:
    return os.access(path, os.W_OK)
