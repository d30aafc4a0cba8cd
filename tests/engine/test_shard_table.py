"""The postings table codec (pure numpy) and the shard's refusal of a damaged table."""

import lmdb
import numpy as np
import pytest

from matcher import synth
from matcher.fingerprint import fingerprint_pcm
from matcher.landmarks import HASH_BITS
from matcher.params import DEFAULT_PARAMS
from matcher.shard import (
    GROUP_BITS,
    PAD,
    Layout,
    Shard,
    ShardError,
    pack_table,
    split_keys,
    table_keys,
    unpack_table,
)


def _table(n: int, slots: int, frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = (rng.zipf(1.4, n) % (1 << HASH_BITS)).astype(np.uint32)  # skewed, as landmark hashes are
    return np.sort(table_keys(h, rng.integers(0, slots, n), rng.integers(0, frames, n)))


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 200_000])
def test_pack_unpack_round_trip(n: int) -> None:
    keys = _table(n, 20, 82_000, seed=n)
    layout, offsets, data = pack_table(keys)
    assert np.array_equal(unpack_table(layout, offsets, data), keys)
    assert len(data) == (n * layout.bits + 7) // 8 + PAD


def test_some_buckets_decode_to_exactly_their_postings() -> None:
    keys = _table(50_000, 7, 40_000)
    layout, offsets, data = pack_table(keys)
    h = split_keys(keys)[0]
    buckets = np.unique(h[::97] >> layout.low_bits).astype(np.int64)
    got = unpack_table(layout, memoryview(offsets), memoryview(data), buckets)
    assert np.array_equal(got, keys[np.isin(h >> layout.low_bits, buckets)])


def test_layout_uses_only_the_bits_the_table_needs() -> None:
    small = Layout.fit(390_000, max_slot=5, max_frame=37_499)
    assert (small.slot_bits, small.frame_bits) == (3, 16)
    dense = Layout.fit(2_860_000, max_slot=19, max_frame=82_499)
    assert (dense.slot_bits, dense.frame_bits) == (5, 17)
    # buckets as fine as the crowding groups, coarser only when offsets would outweigh the postings
    assert dense.low_bits == GROUP_BITS and small.low_bits == GROUP_BITS + 1
    assert Layout.fit(10**9, 1023, 2**19 - 1).low_bits == GROUP_BITS
    assert Layout.fit(1000, 3, 1000).buckets <= 1000
    # fewer bytes than the four a posting took in format 2, offsets included
    keys = _table(1_500_000, 20, 82_500)
    _, offsets, data = pack_table(keys)
    assert (len(offsets) + len(data)) / keys.size < 4


def test_damaged_layout_refused() -> None:
    with pytest.raises(ShardError, match="layout"):
        Layout.from_bytes(b"\x00\x05\x11")
    with pytest.raises(ShardError, match="layout"):
        Layout.from_bytes(b"\x03\x05")


def _truncate_data(path) -> None:
    env = lmdb.open(str(path), max_dbs=5, map_size=1 << 30)
    try:
        db = env.open_db(b"postings", create=False)
        with env.begin(write=True, db=db) as txn:
            txn.put(b"data", txn.get(b"data")[:-100])
    finally:
        env.close()


def test_truncated_table_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "season_01.lmdb"
    hashes = fingerprint_pcm(synth.episode(3, 20, 8000))
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", hashes, 20, "0" * 64)
    _truncate_data(path)
    with Shard.open(path, DEFAULT_PARAMS) as s:
        report = s.check()
        assert not report["ok"] and "short of" in report["problems"][0]
        with pytest.raises(ShardError, match="short of"):
            s.lookup(hashes)
