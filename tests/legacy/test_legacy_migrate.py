"""migrate and validate on real LMDB shards, and the round trip pickle -> LMDB -> identical answers."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import lmdb
import numpy as np
import pytest
from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import identify_pcm
from citywok.matcher.legacy import pickles as legacy
from citywok.matcher.legacy.migrate import format_migrate, format_validate, migrate, sample_hashes, validate
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import Layout, Shard, pack_table, split_keys, unpack_table

from citywok import layout

from .conftest import SEASONS, Corpus, serve_migrated


def _answers(lib: object, corpus: Corpus) -> dict[str, dict]:
    out = {}
    for name, clip in corpus.clips.items():
        j = identify_pcm(lib, decode(clip, 8000)).to_json()  # type: ignore[arg-type]
        j.pop("db_version")
        out[name] = j
    return out


def test_round_trip_gives_identical_answers(corpus: Corpus, tmp_path: Path) -> None:
    with legacy.open_library(corpus.pickles) as lib:
        from_pickle = _answers(lib, corpus)
    with Library.open(serve_migrated(corpus, tmp_path)) as lib:
        from_migrated = _answers(lib, corpus)
    with Library.open(layout.current_dir(corpus.native)) as lib:
        from_native = _answers(lib, corpus)
    assert from_pickle == from_migrated  # the same postings: the same answers, field for field
    # a native ingest stores triplets too (pickles hold none), so a scaled clip may be answered through
    # them: the same episode and offset at the same scale; an unscaled clip's answer is the same in full
    assert from_pickle.keys() == from_native.keys()
    for name, a in from_pickle.items():
        b = from_native[name]
        if (a["time_scale"], a["pitch_scale"]) == (1.0, 1.0):
            assert a == b, name
        else:
            assert (a["match"], a["episode_id"], a["season"]) == (b["match"], b["episode_id"], b["season"]), name
            assert a["offset_seconds"] == pytest.approx(b["offset_seconds"], abs=0.02)
            assert a["time_scale"] == pytest.approx(b["time_scale"], abs=0.005)
    # and the answers are right, so the equality is not between three empty results
    best = from_pickle["s1e2@22.5"]
    assert best["episode_id"] == "S01E02" and best["offset_seconds"] == pytest.approx(22.5, abs=0.02)
    assert (from_pickle["s2e2@30"]["episode_id"], from_pickle["s2e2@30"]["season"]) == ("S02E02", 2)
    assert from_pickle["s1e3@30-fast"]["match"] and from_pickle["s1e3@30-fast"]["speed"] != 1.0
    theme = from_pickle["theme@2"]
    assert theme["ambiguous"] and len(theme["episodes"]) == 3
    assert theme["shared_segment"].startswith("shared by 3 episodes, 0:00-")
    assert not from_pickle["unindexed"]["match"]
    assert all(len(a["candidates"]) > 1 for a in from_pickle.values())


def test_migrated_shards_check_and_match_the_pickles(corpus: Corpus) -> None:
    for season, seeds in SEASONS.items():
        db = legacy.load_season(corpus.pickles / f"season_{season:02d}.pkl")
        with Shard.open(corpus.migrated / f"season_{season:02d}.lmdb") as shard:
            check = shard.check()
            assert check["ok"]
            assert check["hash_count"] == len(db["hashes"])
            assert check["posting_count"] == sum(len(v) for v in db["hashes"].values())
            assert [(e.slot, e.id, e.sha256) for e in shard.episodes()] == [
                (i, e["id"], e["sha256"]) for i, e in enumerate(db["episodes"])]
            assert len(seeds) == check["episode_count"]


def test_migrate_report(corpus: Corpus, tmp_path: Path) -> None:
    reports = migrate(corpus.pickles, tmp_path / "out")
    for r in reports:
        assert r.status == "migrated" and r.hashes > 1000 and r.postings >= r.hashes
        assert r.pickle_bytes == (corpus.pickles / f"season_{r.season:02d}.pkl").stat().st_size
        assert r.lmdb_bytes == (tmp_path / "out" / f"season_{r.season:02d}.lmdb" / "data.mdb").stat().st_size
    lines = format_migrate(reports)
    assert lines[-1].startswith("summary: 2 migrated, 0 skipped, 0 failed; 5 episodes")
    assert ("smaller" in lines[-1]) or ("larger" in lines[-1])


def test_rerun_skips_finished_seasons_and_rebuilds_a_partial(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(corpus.migrated, out)
    # season 2 was interrupted: only its .partial (and a build folder) are left
    shutil.rmtree(out / "season_02.lmdb")
    (out / "season_02.lmdb.partial").mkdir()
    (out / "season_02.lmdb.partial" / "data.mdb").write_bytes(b"half written")
    (out / "season_02.lmdb.build").mkdir()
    before = (out / "season_01.lmdb" / "data.mdb").stat().st_mtime_ns

    reports = migrate(corpus.pickles, out)
    assert [(r.season, r.status) for r in reports] == [(1, "skipped"), (2, "migrated")]
    assert reports[0].hashes > 0  # a skipped season still reports its counts
    assert (out / "season_01.lmdb" / "data.mdb").stat().st_mtime_ns == before
    assert sorted(p.name for p in out.iterdir()) == ["season_01.lmdb", "season_02.lmdb"]
    assert all(r.passed for r in validate(corpus.pickles, out))

    again = migrate(corpus.pickles, out)
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_a_bad_season_fails_alone_and_leaves_nothing(corpus: Corpus, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(corpus.pickles, src, ignore=shutil.ignore_patterns("fingerprints"))
    data = (src / "season_02.pkl").read_bytes()
    (src / "season_02.pkl").write_bytes(data[: len(data) // 2])
    reports = migrate(src, tmp_path / "out")
    assert [(r.season, r.status) for r in reports] == [(1, "migrated"), (2, "failed")]
    assert "season_02.pkl: truncated" in reports[1].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["season_01.lmdb"]
    assert "failed" in "\n".join(format_migrate(reports))


def test_migrate_without_pickles_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(legacy.LegacyError, match="no legacy season databases"):
        migrate(tmp_path, tmp_path / "out")


def test_validate_passes_a_good_migration(corpus: Corpus) -> None:
    reports = validate(corpus.pickles, corpus.migrated)
    assert [r.passed for r in reports] == [True, True]
    for r in reports:
        assert r.sampled == min(1000, r.pickle_hashes) and r.mismatched == 0
        assert r.pickle_hashes == r.lmdb_hashes
    assert any(r.sampled == 1000 for r in reports), "seasons too small to exercise sampling"
    assert format_validate(reports)[-1] == "summary: 2 passed, 0 failed"


def _edit_postings(shard_dir: Path, h: int, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite the stored postings of hash ``h`` straight through LMDB, leaving the metadata alone."""
    env = lmdb.open(str(shard_dir), max_dbs=5, map_size=1 << 30)
    try:
        db = env.open_db(b"postings", create=False)
        with env.begin(write=True, db=db) as txn:
            keys = unpack_table(Layout.from_bytes(txn.get(b"layout")), txn.get(b"offsets"), txn.get(b"data"))
            mine = split_keys(keys)[0] == h
            assert mine.any()
            layout, offsets, data = pack_table(np.sort(np.concatenate([keys[~mine], edit(keys[mine])])))
            txn.put(b"layout", layout.to_bytes())
            txn.put(b"offsets", offsets)
            txn.put(b"data", data)
    finally:
        env.close()


def test_validate_catches_a_changed_posting(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(corpus.migrated, out)
    table = legacy.load_season(corpus.pickles / "season_01.pkl")["hashes"]
    victim = sample_hashes(list(table), 1000, seed=0)[500]

    def one_frame_later(mine: np.ndarray) -> np.ndarray:
        mine[0] += 1  # the same episode, one frame later
        return mine

    _edit_postings(out / "season_01.lmdb", victim, one_frame_later)
    reports = validate(corpus.pickles, out)
    assert [r.passed for r in reports] == [False, True]
    assert reports[0].mismatched == 1 and reports[0].pickle_hashes == reports[0].lmdb_hashes
    assert f"hash {victim}" in "\n".join(format_validate(reports))


def test_validate_catches_a_dropped_hash(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(corpus.migrated, out)
    table = legacy.load_season(corpus.pickles / "season_02.pkl")["hashes"]
    sampled = set(sample_hashes(list(table), 1000, seed=0))
    victim = next(h for h in sorted(table) if h not in sampled)  # not sampled: the count must catch it
    _edit_postings(out / "season_02.lmdb", victim, lambda mine: mine[:0])
    r = validate(corpus.pickles, out)[1]
    assert not r.passed
    assert r.lmdb_hashes == r.pickle_hashes - 1
    assert any("hash count differs" in p for p in r.problems)


def test_validate_reports_a_missing_shard(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(corpus.migrated, out)
    shutil.rmtree(out / "season_01.lmdb")
    reports = validate(corpus.pickles, out)
    assert [r.passed for r in reports] == [False, True]
    assert "no data.mdb" in reports[0].problems[0]


def test_sample_is_seeded() -> None:
    keys = list(range(5000))
    assert sample_hashes(keys, 1000, 0) == sample_hashes(list(reversed(keys)), 1000, 0)
    assert sample_hashes(keys, 1000, 0) != sample_hashes(keys, 1000, 1)
    assert len(set(sample_hashes(keys, 1000, 0))) == 1000
    assert sample_hashes(keys[:10], 1000, 0) == keys[:10]
