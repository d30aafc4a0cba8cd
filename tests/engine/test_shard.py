import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.shard import Shard, ShardError


def test_add_lookup_remove(tmp_path):
    path = tmp_path / "season_01.lmdb"
    h1 = fingerprint_pcm(synth.episode(1, 20, 8000))
    h2 = fingerprint_pcm(synth.episode(2, 20, 8000))
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", h1, 20, "x" * 64)
        s.add_episode("b", h2, 20, "y" * 64)
        assert s.check()["ok"]
        assert s.meta()["posting_count"] == len(h1) + len(h2)
        post = s.lookup(h1)
        slot_a = s.episode("a").slot
        aligned = (post.slot == slot_a) & (post.db_t == post.query_t)
        assert aligned.sum() >= len(h1)  # every hash of "a" finds itself
        assert s.remove_episode("a") is True
        assert s.remove_episode("a") is False
        assert s.check()["ok"]
        assert [e.id for e in s.episodes()] == ["b"]
        assert s.meta()["posting_count"] == len(h2)
        post = s.lookup(h1)
        assert not np.any(post.slot == slot_a)


def test_replace_keeps_one_copy(tmp_path):
    h = fingerprint_pcm(synth.episode(1, 10, 8000))
    with Shard.create(tmp_path / "s.lmdb", DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", h, 10, "1" * 64)
        s.add_episode("a", h, 10, "2" * 64)
        assert s.meta()["episode_count"] == 1 and s.meta()["posting_count"] == len(h)
        assert s.episode("a").sha256 == "2" * 64 and s.check()["ok"]


def test_other_parameters_refused(tmp_path):
    path = tmp_path / "season_01.lmdb"
    Shard.create(path, DEFAULT_PARAMS, 1).close()
    other = replace(DEFAULT_PARAMS, fanout=DEFAULT_PARAMS.fanout + 1)
    with pytest.raises(ShardError, match="other fingerprint parameters.*fanout"):
        Shard.open(path, other)
    with pytest.raises(ShardError, match="other fingerprint parameters"):
        Shard.create(path, other, 1)
    Shard.open(path, DEFAULT_PARAMS).close()


def test_not_a_shard(tmp_path):
    with pytest.raises(ShardError, match="not a season shard"):
        Shard.open(tmp_path)
    (tmp_path / "data.mdb").write_bytes(b"garbage" * 1000)
    with pytest.raises(ShardError):
        Shard.open(tmp_path)


def test_read_only_folder(tmp_path):
    path = tmp_path / "season_01.lmdb"
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", fingerprint_pcm(synth.episode(1, 10, 8000)), 10, "1" * 64)
    os.chmod(path, 0o555)
    try:
        with Shard.open(path, DEFAULT_PARAMS) as s:
            assert [e.id for e in s.episodes()] == ["a"]
            with pytest.raises(ShardError):
                s.add_episode("b", fingerprint_pcm(synth.episode(2, 5, 8000)), 5, "2" * 64)
    finally:
        os.chmod(path, 0o755)


WRITER = """
import sys
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.shard import Shard
s = Shard.create(sys.argv[1], DEFAULT_PARAMS, 1)
h = fingerprint_pcm(synth.episode(7, 600, 8000))
i = 0
while True:
    s.add_episode(f"ep{i}", h, 600, "0" * 64)
    print(i, flush=True)
    i += 1
"""


def test_killed_writer_leaves_shard_consistent(tmp_path):
    """SIGKILL in the middle of writing: every episode is either whole or absent."""
    path = tmp_path / "season_01.lmdb"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            proc.stdout.readline()
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with Shard.open(path, DEFAULT_PARAMS) as s:
        report = s.check()
        assert report["ok"], report
        n = report["episode_count"]
        assert n >= 3
        assert report["posting_count"] == n * s.episodes()[0].hashes


def test_compact_shrinks_and_keeps_everything(tmp_path):
    from citywok.matcher.store.shard import compact

    path = tmp_path / "season_01.lmdb"
    hashes = {f"e{i}": fingerprint_pcm(synth.episode(i, 30, 8000)) for i in range(4)}
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        for eid, h in hashes.items():
            s.add_episode(eid, h, 30, "0" * 64)
        s.remove_episode("e0")
        before = s.nbytes()
        expect = s.lookup(hashes["e2"])
    after = compact(path)
    assert after < before
    with Shard.open(path, DEFAULT_PARAMS) as s:
        assert s.check()["ok"]
        got = s.lookup(hashes["e2"])
        assert np.array_equal(np.sort(got.db_t), np.sort(expect.db_t))


def test_a_batch_writes_what_single_adds_write(tmp_path):
    from citywok.matcher.engine.landmarks import Hashes
    from citywok.matcher.store.season import NewEpisode
    from citywok.matcher.store.shard import MAX_FRAME

    hashes = [fingerprint_pcm(synth.episode(20 + i, 15, 8000)) for i in range(3)]
    with Shard.create(tmp_path / "one", DEFAULT_PARAMS, 1) as a, \
            Shard.create(tmp_path / "batch", DEFAULT_PARAMS, 1) as b:
        for i, h in enumerate(hashes):
            a.add_episode(f"e{i}", h, 15, "0" * 64)
        # e1 comes twice: the later one replaces the earlier within the same transaction
        b.add_episodes([NewEpisode("e0", hashes[0], 15, "0" * 64), NewEpisode("e1", hashes[2], 15, "1" * 64),
                        NewEpisode("e1", hashes[1], 15, "0" * 64), NewEpisode("e2", hashes[2], 15, "0" * 64)])
        for x, y in zip(a.all_postings(), b.all_postings(), strict=True):
            assert np.array_equal(x, y)
        assert b.check()["ok"] and b.meta()["episode_count"] == 3
        assert {k: a.meta()[k] for k in ("hash_count", "posting_count", "total_seconds")} == \
            {k: b.meta()[k] for k in ("hash_count", "posting_count", "total_seconds")}
        # one bad episode refuses the whole batch, and nothing of it is written
        too_long = Hashes(np.array([5], np.uint32), np.array([MAX_FRAME + 1], np.uint32))
        with pytest.raises(ShardError, match="longer than"):
            b.add_episodes([NewEpisode("e3", hashes[0], 15, "0" * 64), NewEpisode("e4", too_long, 9e3, "0" * 64)])
        assert b.episode("e3") is None and b.meta()["episode_count"] == 3


def test_a_pinned_shard_answers_as_an_unpinned_one(tmp_path):
    path = tmp_path / "season_01.lmdb"
    hashes = [fingerprint_pcm(synth.episode(40 + i, 20, 8000)) for i in range(2)]
    empty = tmp_path / "season_02.lmdb"
    Shard.create(empty, DEFAULT_PARAMS, 2).close()
    with Shard.create(path, DEFAULT_PARAMS, 1) as s:
        s.add_episode("a", hashes[0], 20, "0" * 64)
        s.add_episode("b", hashes[1], 20, "1" * 64)
    query = fingerprint_pcm(synth.episode(40, 20, 8000)[8000 * 5: 8000 * 10])
    with Shard.open(path, DEFAULT_PARAMS) as shard:
        a = shard.lookup(query)
        shard.pin()
        b = shard.lookup(query)
        assert a.slot.size > 100
        for x, y in zip((a.query_t, a.slot, a.db_t), (b.query_t, b.slot, b.db_t), strict=True):
            assert np.array_equal(x, y)
    with Shard.open(empty, DEFAULT_PARAMS, pin=True) as nothing:
        assert nothing.lookup(query).slot.size == 0
