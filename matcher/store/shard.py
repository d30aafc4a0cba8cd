"""The season shard: one LMDB environment per season (``season_NN.lmdb``). The one place its format lives.

Named databases:
    meta      b"meta" -> JSON {format, format_version, params, params_digest, season, hash_count,
                               posting_count, episode_count, total_seconds, layout}
    episodes  uint16 BE episode slot -> JSON {id, title, duration, sha256, hashes}
    ids       episode id (utf-8) -> uint16 BE slot
    shared    b"segments" -> JSON list of shared segments (matcher/store/shared.py)
    postings  b"layout"  -> 4 bytes: L, S, F, wide (see Layout)
              b"offsets" -> where each bucket (``hash >> L``) starts among the postings: a little-endian
                            uint32 base per 64 buckets, then a uint16 step from it per bucket (or, when a
                            step would not fit, ``wide``: a uint32 per bucket); one more entry ends the last
              b"data"    -> the postings, bit-packed at ``L + S + F`` bits each, sorted by hash, slot, frame:
                            (hash & (2**L - 1)) << (S + F) | slot << F | frame; 8 zero bytes pad the end

The postings are one compressed-sparse-row table, two values read straight from the memory map. LMDB
spends about 18 bytes on every key, more than a posting's 3, so a key per hash (or per group of a few
hashes, format 2) made most of the file overhead. A bucket is a group of 8 neighbouring hashes (L = 3),
the unit a query's crowding rule judges, so a crowded group is skipped from its offsets alone. S and F
are fitted to each shard when it is written: no more bits than its episodes and their lengths need.
Every change (one episode, or a batch from ``add_episodes``) is one write transaction that rewrites the
table: a crash mid-write leaves the shard as it was before that change.
Limits: 1,024 episodes per season, 2.3 hours per episode.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import HASH_BITS, Hashes
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.store.season import (
    GROUP_BITS,
    MAX_POSTINGS,
    MAX_SLOTS,
    SLOT_BITS,
    Episode,
    NewEpisode,
    Query,
    lookup_seasons,
)

from citywok.errors import CityWokError
from citywok.lmdbfile import LmdbFileError, check_file, still_whole

FORMAT = "citywok-season-shard"
FORMAT_VERSION = 3
TIME_BITS = 19
MAX_FRAME = (1 << TIME_BITS) - 1
BLOCK_BITS = 6  # narrow offsets: a 32-bit base per 64 buckets, a 16-bit step per bucket
PAD = 8  # zero bytes after the packed postings, so every posting can be read as one unaligned uint64
MAP_SIZE = 1 << 36  # address space only; the file grows with the data


class ShardError(CityWokError):
    """The shard is missing, damaged, or was built with other parameters."""

    code = "bad_shard"


def _slot_key(slot: int) -> bytes:
    return slot.to_bytes(2, "big")


# -- the postings table: pure functions, numpy in and out -----------------------------------------
# A table is held as one sorted uint64 array of keys, hash << 29 | slot << 19 | frame, and stored as
# offsets + bit-packed postings under a Layout.

KEY_SLOT_SHIFT = TIME_BITS
KEY_HASH_SHIFT = SLOT_BITS + TIME_BITS


@dataclass(frozen=True)
class Layout:
    """How a shard packs its postings: low hash bits per posting (L), slot bits (S), frame bits (F),
    and whether its offsets need 32 bits each (``wide``) or fit the narrow form."""

    low_bits: int
    slot_bits: int
    frame_bits: int
    wide: bool = False

    @property
    def bits(self) -> int:
        return self.low_bits + self.slot_bits + self.frame_bits

    @property
    def buckets(self) -> int:
        return 1 << (HASH_BITS - self.low_bits)

    @classmethod
    def fit(cls, max_slot: int, max_frame: int) -> Layout:
        """The fewest bits that hold these slots and frames; a bucket per crowding group."""
        return cls(GROUP_BITS, max(1, int(max_slot).bit_length()), max(1, int(max_frame).bit_length()))

    def to_bytes(self) -> bytes:
        return bytes([self.low_bits, self.slot_bits, self.frame_bits, int(self.wide)])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Layout:
        if len(raw) != 4 or raw[0] != GROUP_BITS or not 0 < raw[1] <= SLOT_BITS \
                or not 0 < raw[2] <= TIME_BITS or raw[3] > 1:
            raise ShardError(f"damaged postings layout {bytes(raw)!r}")
        return cls(raw[0], raw[1], raw[2], bool(raw[3]))


def table_keys(h: np.ndarray, slot: np.ndarray | int, frame: np.ndarray) -> np.ndarray:
    """Postings as sortable uint64 keys (hash, slot, frame), the table's working form."""
    return ((np.asarray(h, np.uint64) << np.uint64(KEY_HASH_SHIFT))
            | (np.asarray(slot, np.uint64) << np.uint64(KEY_SLOT_SHIFT)) | np.asarray(frame, np.uint64))


def split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys back to (hash, slot, frame) uint32 arrays."""
    return ((keys >> np.uint64(KEY_HASH_SHIFT)).astype(np.uint32),
            ((keys >> np.uint64(KEY_SLOT_SHIFT)) & np.uint64(MAX_SLOTS - 1)).astype(np.uint32),
            (keys & np.uint64(MAX_FRAME)).astype(np.uint32))


def pack_table(keys: np.ndarray) -> tuple[Layout, bytes, bytes]:
    """Sorted keys -> (layout, offsets, data): the bytes the ``postings`` database stores."""
    h, slot, frame = split_keys(keys)
    layout = Layout.fit(int(slot.max(initial=0)), int(frame.max(initial=0)))
    cum = np.zeros(layout.buckets + 1, np.int64)
    np.cumsum(np.bincount(h >> np.uint32(layout.low_bits), minlength=layout.buckets), out=cum[1:])
    base = cum[:: 1 << BLOCK_BITS]
    step = cum - np.repeat(base, 1 << BLOCK_BITS)[: cum.size]
    if step.max() > 0xFFFF:
        layout = replace(layout, wide=True)
        offsets = cum.astype("<u4").tobytes()
    else:
        offsets = base.astype("<u4").tobytes() + step.astype("<u2").tobytes()
    # drop the bucket's bits from the hash and close the gaps left by unused slot and frame bits
    low = keys & np.uint64((1 << (layout.low_bits + KEY_HASH_SHIFT)) - 1)
    v = (((low >> np.uint64(KEY_HASH_SHIFT)) << np.uint64(layout.slot_bits + layout.frame_bits))
         | (slot.astype(np.uint64) << np.uint64(layout.frame_bits)) | frame.astype(np.uint64))
    return layout, offsets, _pack_bits(v, layout.bits)


def unpack_table(layout: Layout, offsets: Any, data: Any, buckets: np.ndarray | None = None) -> np.ndarray:
    """The keys stored in ``buckets`` (sorted; all when None), from the bytes ``pack_table`` made."""
    return table_keys(*decode_table(layout, offsets, data, buckets))


@dataclass(frozen=True)
class PackedTable:
    """A stored table's three values, checked and viewed as arrays once (no copies): a reader that
    keeps one snapshot open (a served, read-only version) parses it once instead of per query."""

    layout: Layout
    base: np.ndarray  # narrow offsets: a uint32 base per 2**BLOCK_BITS buckets; wide: empty
    step: np.ndarray  # narrow: a uint16 step from the base per bucket; wide: a uint32 offset per bucket
    data: Any

    @functools.cached_property
    def total(self) -> int:
        """Postings in the table."""
        return int(self.starts(np.array([self.layout.buckets]))[0])

    @classmethod
    def view(cls, layout: Layout, offsets: Any, data: Any) -> PackedTable:
        """Narrow offsets are a uint32 base per 2**BLOCK_BITS buckets, then a uint16 step from that
        base per bucket: 2 bytes a bucket instead of 4, which small seasons notice."""
        n = layout.buckets + 1
        if layout.wide:
            base, step = np.zeros(0, np.uint32), np.frombuffer(offsets, "<u4")
            if step.size != n:
                raise ShardError(f"postings offsets hold {step.size} entries, the layout needs {n}")
        else:
            blocks = (layout.buckets >> BLOCK_BITS) + 1
            if len(offsets) != 4 * blocks + 2 * n:
                raise ShardError(f"postings offsets hold {len(offsets)} bytes, the layout needs {4 * blocks + 2 * n}")
            base = np.frombuffer(offsets, "<u4", count=blocks)
            step = np.frombuffer(offsets, "<u2", offset=4 * blocks)
        table = cls(layout, base, step, data)
        if len(data) < ((table.total * layout.bits + 7) >> 3) + PAD:
            raise ShardError(f"postings data holds {len(data)} bytes, short of {table.total} postings")
        return table

    def starts(self, index: np.ndarray) -> np.ndarray:
        """Where buckets ``index`` start among the postings (index ``buckets`` gives the total)."""
        if self.layout.wide:
            return self.step[index].astype(np.int64)
        return self.base[index >> BLOCK_BITS].astype(np.int64) + self.step[index]

    def decode(self, buckets: np.ndarray | None = None, max_count: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The postings stored in ``buckets`` (sorted; all when None) as (hash, slot, frame) uint32
        arrays, leaving out, undecoded, any of those buckets holding more than ``max_count`` postings."""
        layout = self.layout
        if buckets is None:
            count = np.diff(self.starts(np.arange(layout.buckets + 1)))
            if (count < 0).any():
                raise ShardError("postings offsets go backwards")
            v = _unpack_bits(self.data, self.total, layout.bits)
            h = self._hashes(np.arange(layout.buckets, dtype=np.uint32), count, v)
        else:
            h, v = self._read(buckets, max_count)
        return h, *self._slot_frame(v)

    def find(self, buckets: np.ndarray, wanted: np.ndarray, max_count: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`decode` of ``buckets``, keeping only postings whose hash is flagged in ``wanted``
        (a bool per possible hash); the slot and frame of the others are never unpacked."""
        h, v = self._read(buckets, max_count)
        keep = wanted[h]
        return h[keep], *self._slot_frame(v[keep])

    def _read(self, buckets: np.ndarray, max_count: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The hashes and packed values stored in ``buckets``, skipping buckets of more than ``max_count``."""
        start = self.starts(buckets)
        count = self.starts(buckets + 1) - start
        if max_count is not None:
            small = count <= max_count
            buckets, start, count = buckets[small], start[small], count[small]
        index = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
        v = _read_bits(self.data, index, self.layout.bits)
        return self._hashes(buckets, count, v), v

    def _hashes(self, buckets: np.ndarray, count: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Whole hashes of packed values: their bucket's bits, then the low bits each value carries."""
        lay = self.layout
        return (np.repeat(buckets.astype(np.uint32), count) << np.uint32(lay.low_bits)) | (
            v >> np.uint64(lay.slot_bits + lay.frame_bits)).astype(np.uint32)

    def _slot_frame(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lay = self.layout
        slot = ((v >> np.uint64(lay.frame_bits)) & np.uint64((1 << lay.slot_bits) - 1)).astype(np.uint32)
        return slot, (v & np.uint64((1 << lay.frame_bits) - 1)).astype(np.uint32)


def decode_table(layout: Layout, offsets: Any, data: Any, buckets: np.ndarray | None = None,
                 max_count: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`PackedTable.decode` straight from the stored bytes."""
    return PackedTable.view(layout, offsets, data).decode(buckets, max_count)


def _pack_bits(v: np.ndarray, width: int) -> bytes:
    """uint64 values of ``width`` bits each, packed little-endian back to back, then PAD zero bytes.

    64 values fill exactly ``width`` words, and each of the 64 positions in such a group lands at the
    same word and shift in every group: 64 column operations pack the whole array.
    """
    groups = -(-v.size // 64)
    flat = np.zeros(groups * 64, np.uint64)
    flat[: v.size] = v
    vals = flat.reshape(groups, 64)
    words = np.zeros((groups, width), np.uint64)
    for j in range(64):
        w, shift = divmod(j * width, 64)
        words[:, w] |= vals[:, j] << np.uint64(shift)
        if shift + width > 64:
            words[:, w + 1] |= vals[:, j] >> np.uint64(64 - shift)
    return words.astype("<u8").tobytes()[: (v.size * width + 7) >> 3] + bytes(PAD)


def _unpack_bits(data: Any, n: int, width: int) -> np.ndarray:
    """The first ``n`` values of a ``_pack_bits`` buffer, by the same 64 columns."""
    groups = -(-n // 64)
    raw = np.frombuffer(data, np.uint8)
    need = groups * width * 8
    if raw.size < need:
        raw = np.concatenate([raw, np.zeros(need - raw.size, np.uint8)])
    words = raw[:need].view("<u8").reshape(groups, width)
    vals = np.empty((groups, 64), np.uint64)
    mask = np.uint64((1 << width) - 1)
    for j in range(64):
        w, shift = divmod(j * width, 64)
        col = words[:, w] >> np.uint64(shift)
        if shift + width > 64:
            col |= words[:, w + 1] << np.uint64(64 - shift)
        vals[:, j] = col & mask
    return vals.reshape(-1)[:n]


def _read_bits(data: Any, index: np.ndarray, width: int) -> np.ndarray:
    """Values ``index`` of a ``_pack_bits`` buffer: each read as one unaligned uint64, shifted and masked."""
    raw = np.frombuffer(data, np.uint8)
    words = np.ndarray((raw.size - PAD + 1,), dtype="<u8", buffer=raw, strides=(1,))
    bit = index * width
    return (words[bit >> 3] >> (bit & 7).astype(np.uint64)) & np.uint64((1 << width) - 1)


class Shard:
    """One season's LMDB environment, opened once per process (LMDB forbids opening it twice)."""

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
        self._shared_db: lmdb._Database | None
        try:
            self._shared_db = env.open_db(b"shared", create=writable)
        except lmdb.NotFoundError:  # a shard written before shared segments were recorded
            self._shared_db = None
        self._pinned: tuple[lmdb.Transaction, PackedTable | None] | None = None
        self._fd = os.open(path / "data.mdb", os.O_RDONLY)  # to see the file shrink under the mapping

    def intact(self) -> str | None:
        """None while the file is still as long as its header needs and still in its folder, else why
        not. Checked before lookups: a mapping of a file truncated meanwhile dies of SIGBUS when read."""
        why = still_whole(self._fd)
        if why is None and not (self.path / "data.mdb").exists():
            why = "its data.mdb was removed"
        return why

    def pin(self) -> None:
        """Keep one read snapshot open and its table parsed, for a shard nothing writes to any more
        (a served version): queries then skip a transaction and the parsing of the offsets each."""
        if self._pinned is None:
            txn = self.env.begin(buffers=True)
            self._pinned = (txn, self._packed(txn))

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, params: FingerprintParams, season: int) -> Shard:
        """Open for writing, creating an empty shard with these parameters if there is none."""
        path = Path(path)
        new = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            if (path / "data.mdb").exists() and (path / "data.mdb").stat().st_size:
                _check_file(path)
            hold = _hold(path, fcntl.LOCK_SH)
        except OSError as e:
            raise ShardError(f"{path}: cannot create the season folder ({e.strerror})") from None
        try:
            env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=5, subdir=True)
        except lmdb.Error as e:
            _release(hold)
            if new:  # a half-made folder would be a damaged season to every reader
                shutil.rmtree(path, ignore_errors=True)
            raise ShardError(f"{path}: cannot open LMDB environment ({_lmdb_reason(e)})") from None
        shard = cls(path, env, writable=True, hold=hold)
        try:
            existing = shard._stored_meta()
            if existing is None:
                meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "params": params.to_dict(),
                        "params_digest": params.digest(), "season": season, "hash_count": 0,
                        "posting_count": 0, "episode_count": 0, "total_seconds": 0.0}
                with env.begin(write=True) as txn:
                    txn.put(b"meta", json.dumps(meta).encode(), db=shard._meta_db)
            else:
                shard._check_meta(existing, params)
        except (lmdb.Error, ShardError) as e:
            shard.close()
            if new:
                shutil.rmtree(path, ignore_errors=True)
            why = _lmdb_reason(e) if isinstance(e, lmdb.Error) else str(e)
            raise ShardError(f"{path}: {why}") from None
        return shard

    @classmethod
    def open(cls, path: Path, params: FingerprintParams | None = None, writable: bool = False,
             pin: bool = False) -> Shard:
        """Open an existing shard; refuse it if it was built with parameters other than ``params``.
        ``pin``: read-only and never written again while open (see :meth:`pin`)."""
        path = Path(path)
        if not (path / "data.mdb").is_file():
            raise ShardError(f"{path}: not a season shard (no data.mdb)")
        hold = _hold(path, fcntl.LOCK_SH)
        try:
            _check_file(path)
            if writable:
                env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=5, subdir=True, create=False)
            else:
                # A read-only volume cannot hold a lock file; readers then rely on no writer existing.
                lock = _dir_writable(path)
                env = lmdb.open(str(path), readonly=True, lock=lock, max_dbs=5, subdir=True,
                                create=False, readahead=False, max_readers=512)
        except lmdb.Error as e:
            _release(hold)
            raise ShardError(f"{path}: cannot open LMDB environment ({e})") from None
        except ShardError:
            _release(hold)
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
                _release(hold)
            raise ShardError(f"{path}: {e}") from None
        return shard

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
                out.append(Episode(int.from_bytes(k, "big"), d["id"], d.get("title", d["id"]),
                                   d["duration"], d["sha256"], d["hashes"]))
        return out

    def episode(self, episode_id: str) -> Episode | None:
        with self.env.begin() as txn:
            slot = txn.get(episode_id.encode(), db=self._ids_db)
            if slot is None:
                return None
            d = _json(txn.get(slot, db=self._episodes_db))
        return Episode(int.from_bytes(slot, "big"), d["id"], d.get("title", d["id"]), d["duration"],
                       d["sha256"], d["hashes"])

    def lookup(self, hashes: Hashes, max_postings: int = MAX_POSTINGS) -> Postings:
        """Every stored posting of the query's hashes, paired with each query time of that hash.

        A hash whose bucket holds more than ``max_postings`` postings carries no evidence worth its
        cost and is skipped.
        """
        return lookup_seasons([self], hashes, max_postings)

    def find_postings(self, query: Query, max_postings: int = MAX_POSTINGS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored postings of the query's hashes as (hash, slot, frame), skipping every group of
        2**GROUP_BITS neighbouring hashes that holds more than ``max_postings`` postings. Every layout's
        bucket is a crowding group (Layout.from_bytes insists), so crowded ones are skipped from their
        offsets, undecoded."""
        with self._snapshot() as table:
            return _EMPTY if table is None else table.find(query.buckets, query.wanted, max_postings)

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[PackedTable | None]:
        """The postings table to read: the pinned one, or one viewed in a read transaction for the block."""
        if self._pinned is not None:
            yield self._pinned[1]
            return
        with self.env.begin(buffers=True) as txn:
            yield self._packed(txn)

    def _packed(self, txn: lmdb.Transaction) -> PackedTable | None:
        """This snapshot's postings table, viewed in place (valid while ``txn`` is); None when empty."""
        raw = txn.get(b"layout", db=self._postings_db)
        if raw is None:
            return None
        return PackedTable.view(_layout(bytes(raw)), txn.get(b"offsets", db=self._postings_db),
                                txn.get(b"data", db=self._postings_db))

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of the shard as (hash, slot, frame) arrays: for season-wide analyses."""
        with self.env.begin(buffers=True) as txn:
            return split_keys(self._table(txn))

    def _table(self, txn: lmdb.Transaction) -> np.ndarray:
        """The whole postings table of this transaction's snapshot, as sorted keys."""
        table = self._packed(txn)
        return np.zeros(0, np.uint64) if table is None else table_keys(*table.decode())

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

    def put_shared(self, segments: list[dict[str, Any]]) -> None:
        if not self.writable or self._shared_db is None:
            raise ShardError("shard is open read-only")
        with self._writing() as txn:
            txn.put(b"segments", json.dumps(segments).encode(), db=self._shared_db)

    def shared_covers(self) -> dict[str, str] | None:
        """The episodes (id -> sha256) the stored shared segments were found over; None if unrecorded."""
        if self._shared_db is None:
            return None
        with self.env.begin(db=self._shared_db) as txn:
            raw = txn.get(b"covered")
        return json.loads(raw) if raw else None

    def put_shared_covers(self, covered: dict[str, str]) -> None:
        if not self.writable or self._shared_db is None:
            raise ShardError("shard is open read-only")
        with self._writing() as txn:
            txn.put(b"covered", json.dumps(covered, sort_keys=True).encode(), db=self._shared_db)

    def check(self) -> dict[str, Any]:
        """Recount hashes and postings and compare with the metadata record (used by validate and tests)."""
        meta = self.meta()
        problems = []
        with self.env.begin(buffers=True) as txn:
            try:
                keys = self._table(txn)
            except ShardError as e:
                keys = np.zeros(0, np.uint64)
                problems.append(str(e))
        if keys.size and np.any(keys[1:] < keys[:-1]):
            problems.append("postings are out of order")
        h, slot, _ = split_keys(keys)
        episodes = self.episodes()
        if keys.size and not np.isin(np.unique(slot), [e.slot for e in episodes]).all():
            problems.append("postings name an episode slot the shard does not hold")
        hash_count, postings = _distinct(h), int(keys.size)
        ok = not problems and (hash_count, postings, len(episodes)) == (
            meta["hash_count"], meta["posting_count"], meta["episode_count"])
        return {"ok": ok, "hash_count": hash_count, "posting_count": postings, "episode_count": len(episodes),
                "problems": problems, "meta": meta}

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.name == "data.mdb")

    # -- writing -------------------------------------------------------------------------------

    def add_episode(
        self, episode_id: str, hashes: Hashes, duration: float, sha256: str, title: str | None = None
    ) -> Episode:
        """Add (or replace) one episode in a single transaction."""
        return self.add_episodes([NewEpisode(episode_id, hashes, duration, sha256, title)])[0]

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
            meta = _json(txn.get(b"meta", db=self._meta_db))
            table = self._table(txn)
            parts: dict[int, np.ndarray] = {}  # this batch's postings by slot
            for n in new:
                old = txn.get(n.id.encode(), db=self._ids_db)
                if old is not None:
                    old_slot = int.from_bytes(old, "big")
                    self._forget(txn, meta, old_slot, n.id)
                    table = table[((table >> np.uint64(KEY_SLOT_SHIFT)) & np.uint64(MAX_SLOTS - 1))
                                  != np.uint64(old_slot)]
                    parts.pop(old_slot, None)
                slot = self._free_slot(txn)
                ep = Episode(slot, n.id, n.title or n.id, float(n.duration), n.sha256, len(n.hashes))
                txn.put(_slot_key(slot), json.dumps(ep.to_json()).encode(), db=self._episodes_db)
                txn.put(n.id.encode(), _slot_key(slot), db=self._ids_db)
                parts[slot] = np.sort(table_keys(n.hashes.hash, slot, n.hashes.t))
                meta["episode_count"] += 1
                meta["total_seconds"] = round(meta["total_seconds"] + float(n.duration), 3)
                added.append(ep)
            self._put_table(txn, meta, np.sort(np.concatenate([table, *parts.values()]), kind="stable"))
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
            d = _json(txn.get(slot, db=self._episodes_db))
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
            meta = _json(txn.get(b"meta", db=self._meta_db))
            slot = int.from_bytes(old, "big")
            self._forget(txn, meta, slot, episode_id)
            table = self._table(txn)
            self._put_table(txn, meta, table[((table >> np.uint64(KEY_SLOT_SHIFT)) & np.uint64(MAX_SLOTS - 1))
                                             != np.uint64(slot)])
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
                raise ShardError(f"{self.path.name}: the write failed ({_lmdb_reason(e)}); nothing was changed"
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
        meta["hash_count"] = _distinct(keys >> np.uint64(KEY_HASH_SHIFT))
        meta["posting_count"] = int(keys.size)

    def _forget(self, txn: lmdb.Transaction, meta: dict[str, Any], slot: int, episode_id: str) -> None:
        """Drop an episode's records (its postings go with the next ``_put_table``)."""
        d = _json(txn.get(_slot_key(slot), db=self._episodes_db))
        txn.delete(_slot_key(slot), db=self._episodes_db)
        txn.delete(episode_id.encode(), db=self._ids_db)
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


_EMPTY = (np.zeros(0, np.uint32),) * 3


def compact(path: Path) -> int | None:
    """Rewrite a shard with full pages and no free pages (about half the size after many ingests).

    The repacked file is written beside the live one and renamed over it, so a crash leaves one or
    the other, never half of each. A process that has the shard open keeps its own mapping of the old
    file and would write into it unseen, so compaction runs only under an exclusive lock that no
    holder shares (HOLDERS_LOCK): when anyone else has the season open (a server, another ingest) it
    is skipped and None returned. Otherwise returns the new size in bytes.
    """
    path = Path(path)
    try:
        lock = _hold(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    tmp = path / ".compact"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _check_file(path)
        env = lmdb.open(str(path), readonly=True, max_dbs=5, subdir=True, create=False)
        try:
            repack(env, tmp)
        finally:
            env.close()
        os.replace(tmp / "data.mdb", path / "data.mdb")
    except lmdb.Error as e:
        raise ShardError(f"{path}: compaction failed ({_lmdb_reason(e)}); the shard is as it was") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _release(lock)
    return (path / "data.mdb").stat().st_size


HOLDERS_LOCK = "holders.lock"


def _hold(path: Path, how: int) -> int:
    """An fd holding an flock on the season's HOLDERS_LOCK (-1 on a read-only volume without one)."""
    try:
        fd = os.open(path / HOLDERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(path / HOLDERS_LOCK, os.O_RDONLY)
        except OSError:
            return -1
    try:
        fcntl.flock(fd, how)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _lmdb_reason(e: lmdb.Error) -> str:
    """An LMDB error as a sentence: a full disk says so."""
    if isinstance(e, lmdb.MapFullError) or "No space left" in str(e) or "MDB_MAP_FULL" in str(e):
        return "the disk or the map is full; free some space and run it again"
    return str(e)


def _json(raw: Any) -> Any:
    """A record the shard's own bookkeeping guarantees (a slot's episode, the metadata)."""
    if raw is None:
        raise ShardError("a record is missing (damaged shard)")
    return json.loads(bytes(raw))


def _distinct(sorted_values: np.ndarray) -> int:
    """How many distinct values a sorted array holds."""
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1 if sorted_values.size else 0


@functools.lru_cache(maxsize=64)
def _layout(raw: bytes) -> Layout:
    return Layout.from_bytes(raw)


def _check_file(path: Path) -> None:
    """Refuse a data file that mapping could turn into a SIGBUS (truncated, or pointing past its end)."""
    try:
        check_file(path / "data.mdb")
    except LmdbFileError as e:
        raise ShardError(f"{path}: damaged data.mdb ({e})") from None


def _dir_writable(path: Path) -> bool:
    return os.access(path, os.W_OK)
