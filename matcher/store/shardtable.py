"""The season shard's format: its named databases, and the postings table codec (pure functions,
numpy in and out). The one place the format lives; shard.py opens and writes it, shardread.py reads it.

Named databases:
    meta      b"meta" -> JSON {format, format_version, params, params_digest, season, hash_count,
                               posting_count, episode_count, total_seconds, layout, triplet_count}
    episodes  uint16 BE episode slot -> JSON {id, title, duration, sha256, hashes}
    ids       episode id (utf-8) -> uint16 BE slot
    shared    b"segments" -> JSON list of shared segments (matcher/store/shared.py)
    postings  b"layout"  -> 4 bytes: L, S, F, wide (see Layout)
              b"offsets" -> where each bucket (``hash >> L``) starts among the postings: a little-endian
                            uint32 base per 64 buckets, then a uint16 step from it per bucket (or, when a
                            step would not fit, ``wide``: a uint32 per bucket); one more entry ends the last
              b"data"    -> the postings, bit-packed at ``L + S + F`` bits each, sorted by hash, slot, frame:
                            (hash & (2**L - 1)) << (S + F) | slot << F | frame; 8 zero bytes pad the end
    triplets  the same three records for the scale-invariant triplets (matcher/engine/triplets.py), whose
              frame field is a value: the anchor's frame << PAYLOAD_BITS | its payload. Optional: a shard
              written before triplets has none (``triplet_count`` 0), and its clips skip that search.

The postings are one compressed-sparse-row table, two values read straight from the memory map. LMDB
spends about 18 bytes on every key, more than a posting's 3, so a key per hash (or per group of a few
hashes, format 2) made most of the file overhead. A query reads whole buckets and keeps the postings of its
own hashes; a bucket spans 2**L neighbouring hashes, L chosen per table (format 4; format 3 had L = 3
always): as many hashes, up to 8, as keep a bucket to BUCKET_POSTINGS postings on average. A dense season
is then read hash by hash, and a small one keeps 2 bytes of offsets per 8 hashes; a bucket narrowed to
fewer hashes still holds more than BUCKET_POSTINGS / 2 postings of about 3 bytes against its 2 bytes of
offsets. S and F are fitted to each shard when it is written: no more bits than its episodes and their
lengths need. Limits: 1,024 episodes per season, 2.3 hours per episode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from citywok.matcher.engine.landmarks import HASH_BITS
from citywok.matcher.engine.triplets import PAYLOAD_BITS
from citywok.matcher.store.season import GROUP_BITS, MAX_SLOTS, SLOT_BITS

from citywok.errors import CityWokError

FORMAT = "citywok-season-shard"
FORMAT_VERSION = 4
READABLE_VERSIONS = (3, 4)  # format 3 is format 4 with every table at L = 3
TIME_BITS = 19
MAX_FRAME = (1 << TIME_BITS) - 1
TRIPLET_VALUE_BITS = TIME_BITS + PAYLOAD_BITS  # the triplet table's frame field: a frame and its payload
BUCKET_POSTINGS = 2  # a table's buckets hold about this many postings or fewer (L = GROUP_BITS at most)
BLOCK_BITS = 6  # narrow offsets: a 32-bit base per 64 buckets, a 16-bit step per bucket
PAD = 8  # zero bytes after the packed postings, so every posting can be read as one unaligned uint64


class ShardError(CityWokError):
    """The shard is missing, damaged, or was built with other parameters."""

    code = "bad_shard"


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
    def fit(cls, max_slot: int, max_frame: int, postings: int = 0) -> Layout:
        """The fewest bits that hold these slots and frames, and buckets of as many hashes (up to a crowding
        group) as keep ``postings`` at about BUCKET_POSTINGS a bucket: a query reads its buckets whole."""
        low = GROUP_BITS
        while low > 0 and postings > BUCKET_POSTINGS << (HASH_BITS - low):
            low -= 1
        return cls(low, max(1, int(max_slot).bit_length()), max(1, int(max_frame).bit_length()))

    def to_bytes(self) -> bytes:
        return bytes([self.low_bits, self.slot_bits, self.frame_bits, int(self.wide)])

    @classmethod
    def from_bytes(cls, raw: bytes, frame_bits: int = TIME_BITS) -> Layout:
        """A stored layout, checked: ``frame_bits`` is the most the table's frame field may hold."""
        if len(raw) != 4 or raw[0] > GROUP_BITS or not 0 < raw[1] <= SLOT_BITS \
                or not 0 < raw[2] <= frame_bits or raw[3] > 1:
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


def pack_table(keys: np.ndarray, low_bits: int | None = None) -> tuple[Layout, bytes, bytes]:
    """Sorted keys -> (layout, offsets, data): the bytes the ``postings`` database stores."""
    return pack_columns(*split_keys(keys), low_bits=low_bits)


def pack_columns(h: np.ndarray, slot: np.ndarray, frame: np.ndarray, low_bits: int | None = None
                 ) -> tuple[Layout, bytes, bytes]:
    """Postings sorted by hash as columns -> (layout, offsets, data). The frame field may be wider than a
    key holds (the triplet table's values, see TRIPLET_VALUE_BITS). ``low_bits``: the buckets' L, fitted to
    the table's size unless given."""
    layout = Layout.fit(int(slot.max(initial=0)), int(frame.max(initial=0)), h.size)
    if low_bits is not None:
        layout = replace(layout, low_bits=low_bits)
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
    low = h.astype(np.uint64) & np.uint64((1 << layout.low_bits) - 1)
    v = ((low << np.uint64(layout.slot_bits + layout.frame_bits))
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

    def find(self, distinct: np.ndarray, wanted: np.ndarray, max_count: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The postings of hashes ``distinct`` (sorted; ``wanted`` flags them, a bool per possible hash) as
        (hash, slot, frame), skipping every crowding group (``hash >> GROUP_BITS``) that holds more than
        ``max_count`` postings, from the offsets alone. A bucket's postings of other hashes are dropped before
        their slot and frame are unpacked."""
        low = self.layout.low_bits
        group = distinct >> np.uint32(GROUP_BITS)
        first = np.r_[True, group[1:] != group[:-1]]
        g = group[first].astype(np.int64)
        span = GROUP_BITS - low
        crowded = self.starts((g + 1) << span) - self.starts(g << span) > max_count
        if crowded.any():
            distinct = distinct[~np.repeat(crowded, np.diff(np.r_[np.flatnonzero(first), distinct.size]))]
        buckets = (distinct >> np.uint32(low)).astype(np.int64)
        if low:
            buckets = buckets[np.r_[True, buckets[1:] != buckets[:-1]]]
        h, v = self._read(buckets, None)
        if low:
            keep = wanted[h]
            h, v = h[keep], v[keep]
        return h, *self._slot_frame(v)

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
        frame = v & np.uint64((1 << lay.frame_bits) - 1)
        return slot, frame.astype(np.uint32) if lay.frame_bits <= 32 else frame


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


def distinct(sorted_values: np.ndarray) -> int:
    """How many distinct values a sorted array holds."""
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1 if sorted_values.size else 0


@functools.lru_cache(maxsize=64)
def parse_layout(raw: bytes, frame_bits: int = TIME_BITS) -> Layout:
    """A stored layout record, parsed once per distinct value."""
    return Layout.from_bytes(raw, frame_bits)
