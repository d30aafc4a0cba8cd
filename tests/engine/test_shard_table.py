"""The postings table codec (pure numpy) and the shard's refusal of a damaged table."""

import json

import lmdb
import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.landmarks import HASH_BITS, Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.shard import (
    FORMAT_VERSION,
    GROUP_BITS,
    PAD,
    Layout,
    NewEpisode,
    Shard,
    ShardError,
    pack_table,
    split_keys,
    table_keys,
    unpack_table,
)
from citywok.matcher.store.shardtable import BUCKET_POSTINGS, PackedTable


def _table(n: int, slots: int, frames: int, seed: int = 0, skewed: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if skewed:  # a few hashes very common, as with landmark hashes (and more than in real ones)
        h = (rng.zipf(1.4, n) % (1 << HASH_BITS)).astype(np.uint32)
    else:
        h = rng.integers(0, 1 << HASH_BITS, n).astype(np.uint32)
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
    small = Layout.fit(max_slot=5, max_frame=37_499)
    assert (small.low_bits, small.slot_bits, small.frame_bits) == (GROUP_BITS, 3, 16)
    assert Layout.fit(max_slot=19, max_frame=82_499).bits == GROUP_BITS + 5 + 17
    # a season's table takes fewer bytes than the four a posting took in format 2, offsets included
    keys = _table(390_000, 6, 37_500, skewed=False)
    layout, offsets, data = pack_table(keys)
    assert not layout.wide and len(offsets) == 4 * (layout.buckets // 64 + 1) + 2 * (layout.buckets + 1)
    assert (len(offsets) + len(data)) / keys.size < 4.2


def test_wide_offsets_when_a_block_of_buckets_overflows_16_bits() -> None:
    rng = np.random.default_rng(5)
    h = rng.integers(0, 512, 70_000).astype(np.uint32)  # 70,000 postings in the first 64 buckets
    keys = np.sort(table_keys(h, rng.integers(0, 3, h.size), rng.integers(0, 1000, h.size)))
    layout, offsets, data = pack_table(keys)
    assert layout.wide and len(offsets) == 4 * (layout.buckets + 1)
    assert np.array_equal(unpack_table(layout, offsets, data), keys)
    assert Layout.from_bytes(layout.to_bytes()) == layout


def test_buckets_narrow_as_the_table_grows() -> None:
    per_bucket = [BUCKET_POSTINGS << (HASH_BITS - low) for low in range(GROUP_BITS + 1)]
    assert Layout.fit(5, 1000, per_bucket[GROUP_BITS]).low_bits == GROUP_BITS
    assert Layout.fit(5, 1000, per_bucket[GROUP_BITS] + 1).low_bits == GROUP_BITS - 1
    assert Layout.fit(5, 1000, per_bucket[1] + 1).low_bits == 0
    assert Layout.fit(5, 1000, 10 * per_bucket[0]).low_bits == 0
    for low in range(GROUP_BITS + 1):
        assert Layout.from_bytes(Layout(low, 5, 17).to_bytes()).low_bits == low


@pytest.mark.parametrize("low", range(GROUP_BITS + 1))
def test_find_reads_the_query_hashes_and_skips_crowded_groups_at_every_bucket_width(low: int) -> None:
    keys = _table(120_000, 9, 50_000, seed=low)  # skewed: some groups hold more than max_count
    layout, offsets, data = pack_table(keys, low_bits=low)
    assert layout.low_bits == low
    table = PackedTable.view(layout, offsets, data)
    h, slot, frame = split_keys(keys)
    rng = np.random.default_rng(1)
    query = np.unique(np.r_[h[rng.integers(0, h.size, 3000)], rng.integers(0, 1 << HASH_BITS, 3000)]
                      ).astype(np.uint32)
    wanted = np.zeros(1 << HASH_BITS, bool)
    wanted[query] = True
    max_count = 64
    group_size = np.bincount(h >> GROUP_BITS, minlength=1 << (HASH_BITS - GROUP_BITS))
    assert (group_size[query >> GROUP_BITS] > max_count).any()  # the crowding rule is exercised
    expect = wanted[h] & (group_size[h >> GROUP_BITS] <= max_count)
    got = table_keys(*table.find(query, wanted, max_count))
    assert np.array_equal(np.sort(got), keys[expect])


def test_damaged_layout_refused() -> None:
    with pytest.raises(ShardError, match="layout"):
        Layout.from_bytes(b"\x04\x05\x11\x00")
    with pytest.raises(ShardError, match="layout"):
        Layout.from_bytes(b"\x03\x05\x11")


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


def _set_format_version(path, version: int) -> None:
    env = lmdb.open(str(path), max_dbs=8, map_size=1 << 30)
    try:
        db = env.open_db(b"meta", create=False)
        with env.begin(write=True, db=db) as txn:
            meta = json.loads(txn.get(b"meta"))
            txn.put(b"meta", json.dumps({**meta, "format_version": version}).encode())
    finally:
        env.close()


def test_a_format_3_shard_is_read_and_rewritten_as_format_4(tmp_path) -> None:
    path = tmp_path / "season_01.lmdb"
    a, b = fingerprint_pcm(synth.episode(3, 20, 8000)), fingerprint_pcm(synth.episode(4, 20, 8000))
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", a, 20, "0" * 64)
    _set_format_version(path, 3)  # what a shard written before format 4 holds: every bucket at L = 3
    with Shard.open(path, DEFAULT_PARAMS) as s:
        assert s.meta()["format_version"] == 3 and s.meta()["layout"]["low_bits"] == GROUP_BITS
        assert s.lookup(a).slot.size >= len(a)
    with Shard.open(path, DEFAULT_PARAMS, writable=True) as s:
        s.add_episode("b", b, 20, "1" * 64)
        assert s.meta()["format_version"] == FORMAT_VERSION == 4


def test_a_shard_of_a_later_format_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "season_01.lmdb"
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", fingerprint_pcm(synth.episode(3, 20, 8000)), 20, "0" * 64)
    _set_format_version(path, 5)
    with pytest.raises(ShardError, match="unsupported shard format 'citywok-season-shard' v5"):
        Shard.open(path, DEFAULT_PARAMS)


def _postings_of(episodes: list, query: np.ndarray) -> list[tuple[str, int]]:
    """(episode id, frame) of every posting of ``query``'s hashes: what a lookup must find."""
    return sorted((ep.id, int(t)) for ep in episodes for t in ep.hashes.t[np.isin(ep.hashes.hash, query)].tolist())


def test_a_dense_season_narrows_its_buckets_and_reads_back_every_posting(tmp_path) -> None:
    rng = np.random.default_rng(3)
    episodes = [NewEpisode(f"S01E0{e + 1}", Hashes(rng.integers(0, 1 << HASH_BITS, 250_000).astype(np.uint32),
                                                    np.sort(rng.integers(0, 80_000, 250_000)).astype(np.uint32)),
                           1300.0, f"{e:064d}") for e in range(3)]
    query = np.unique(np.r_[episodes[0].hashes.hash[:2000], episodes[2].hashes.hash[-2000:],
                            rng.integers(0, 1 << HASH_BITS, 2000)]).astype(np.uint32)

    def found(s: Shard) -> list[tuple[str, int]]:
        post = s.lookup(Hashes(query, np.zeros(query.size, np.uint32)))
        id_of = {ep.slot: ep.id for ep in s.episodes()}
        return sorted((id_of[int(sl)], int(t)) for sl, t in zip(post.slot, post.db_t, strict=True))

    path = tmp_path / "season_01.lmdb"
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episodes(episodes)
        assert s.meta()["layout"]["low_bits"] == GROUP_BITS - 1  # 750,000 postings: 4 hashes a bucket
        assert s.check()["ok"] and found(s) == _postings_of(episodes, query)
        assert s.remove_episode("S01E02")
        assert s.meta()["layout"]["low_bits"] == GROUP_BITS  # 500,000 postings: 8 again
        assert s.check()["ok"] and found(s) == _postings_of([episodes[0], episodes[2]], query)
