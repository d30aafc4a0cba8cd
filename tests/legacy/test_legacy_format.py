"""The legacy pickle format: what the writer produces, and what the restricted reader refuses."""

from __future__ import annotations

import os
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pytest
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.legacy import pickles as legacy
from citywok.matcher.legacy.ingest import PickleSeasonWriter
from citywok.matcher.store.shard import Shard

from .conftest import Corpus


def _write_small(path: Path) -> dict:
    db = legacy.new_season(1)
    db["episodes"].append({"id": "S01E01", "title": "one", "duration": 2.0, "sha256": "ab", "hashes": 3})
    db["hashes"] = {5: [("S01E01", 0), ("S01E01", 7)], 9: [("S01E01", 3)]}
    legacy.write_season(path, db)
    return db


class _RunsShell:
    """Unpickling this calls os.system(command): the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_written_season_reads_back_identical(tmp_path: Path) -> None:
    path = tmp_path / "season_01.pkl"
    db = _write_small(path)
    assert legacy.load_season(path) == db
    assert not [p for p in tmp_path.iterdir() if p.name != "season_01.pkl"], "temporary file left behind"
    # plain containers only: the stream names no global at all
    assert not any(op.name in {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ"}
                   for op, _, _ in pickletools.genops(path.read_bytes()))


def test_ingested_pickle_has_the_documented_shape(corpus: Corpus) -> None:
    db = legacy.load_season(corpus.pickles / "season_01.pkl")
    assert db["version"] == 1 and db["season"] == 1 and db["params"] == DEFAULT_PARAMS.to_dict()
    assert [e["id"] for e in db["episodes"]] == ["S01E01", "S01E02", "S01E03"]
    assert all(set(e) >= {"id", "title", "duration", "sha256"} for e in db["episodes"])
    h, postings = next(iter(db["hashes"].items()))
    assert isinstance(h, int) and all(isinstance(e, str) and isinstance(t, int) for e, t in postings)
    assert sum(len(v) for v in db["hashes"].values()) == sum(e["hashes"] for e in db["episodes"])
    # the theme all season 1 episodes open with is recorded, in plain types only
    assert [len(seg["occurrences"]) for seg in db["shared"]] == [3]
    raw = (corpus.pickles / "season_01.pkl").read_bytes()
    assert not any("GLOBAL" in op.name or op.name == "REDUCE" for op, _, _ in pickletools.genops(raw))


def test_foreign_pickle_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"))
    # the payload is live: an ordinary unpickler runs it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsShell(f"touch {control}")))
    assert control.exists()

    path = tmp_path / "season_01.pkl"
    path.write_bytes(payload)
    with pytest.raises(legacy.LegacyError, match=r"season_01\.pkl: not a CityWok legacy database.*system"):
        legacy.load_season(path)
    assert not marker.exists()


def test_payload_hidden_inside_a_valid_looking_season_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    db = legacy.new_season(1)
    db["episodes"].append({"id": "S01E01", "title": _RunsShell(f"touch {marker}")})
    path = tmp_path / "season_01.pkl"
    path.write_bytes(pickle.dumps(db))
    with pytest.raises(legacy.LegacyError, match="refused to load global"):
        legacy.load_season(path)
    assert not marker.exists()


def test_other_globals_are_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "season_01.pkl"
    path.write_bytes(pickle.dumps({"version": 1, "hashes": np.arange(3)}))
    with pytest.raises(legacy.LegacyError, match=r"numpy"):
        legacy.load_season(path)


@pytest.mark.parametrize("keep", [0, 1, 0.5, -1])
def test_truncated_pickle_names_the_file(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "season_01.pkl"
    _write_small(path)
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path.write_bytes(data[:n])
    with pytest.raises(legacy.LegacyError) as e:
        legacy.load_season(path)
    assert str(path) in str(e.value)
    assert "truncated" in str(e.value)


def test_truncated_real_season_is_refused(corpus: Corpus, tmp_path: Path) -> None:
    data = (corpus.pickles / "season_01.pkl").read_bytes()
    path = tmp_path / "season_01.pkl"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(legacy.LegacyError, match=r"season_01\.pkl: truncated"):
        legacy.load_season(path)


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([1, 2, 3], "top level is list"),
        ({"version": 1}, "missing"),
        ({**legacy.new_season(1), "version": 2}, "format version 2"),
        ({**legacy.new_season(1), "hashes": [1]}, "hashes a dict"),
        ({**legacy.new_season(1), "episodes": [{"title": "no id"}]}, "malformed episode"),
        ({**legacy.new_season(1), "hashes": {1: "x"}}, "malformed hash entry"),
    ],
)
def test_wrong_shape_is_refused(tmp_path: Path, obj: object, why: str) -> None:
    path = tmp_path / "season_01.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(legacy.LegacyError, match=why) as e:
        legacy.load_season(path)
    assert str(path) in str(e.value)


def test_trailing_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "season_01.pkl"
    _write_small(path)
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(legacy.LegacyError, match="after the pickle"):
        legacy.load_season(path)


def test_other_fingerprint_parameters_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "season_01.pkl"
    legacy.write_season(path, legacy.new_season(1, FingerprintParams(fanout=6)))
    with pytest.raises(legacy.LegacyError, match="fanout=6/5"):
        legacy.load_season(path)


def test_open_library_errors(tmp_path: Path) -> None:
    with pytest.raises(legacy.LegacyError, match="no legacy season databases"):
        legacy.open_library(tmp_path)
    legacy.write_season(tmp_path / "season_03.pkl", legacy.new_season(4))
    with pytest.raises(legacy.LegacyError, match="holds season 4"):
        legacy.open_library(tmp_path)


def test_writer_replaces_an_episode_and_drops_its_postings(tmp_path: Path) -> None:
    path = tmp_path / "season_01.pkl"
    w = PickleSeasonWriter(path, DEFAULT_PARAMS, 1)
    w.add_episode("A", Hashes(np.array([1, 2], np.uint32), np.array([0, 5], np.uint32)), 1.0, "s1")
    w.add_episode("B", Hashes(np.array([2], np.uint32), np.array([9], np.uint32)), 1.0, "s2")
    w.close()
    w = PickleSeasonWriter(path, DEFAULT_PARAMS, 1)
    assert w.episode("A").sha256 == "s1"
    w.add_episode("A", Hashes(np.array([3], np.uint32), np.array([4], np.uint32)), 1.0, "s3")
    w.close()
    db = legacy.load_season(path)
    assert db["hashes"] == {2: [("B", 9)], 3: [("A", 4)]}
    assert [e["id"] for e in db["episodes"]] == ["B", "A"]


def _rows(p: Postings) -> list[tuple[int, int, int]]:
    return sorted(zip(p.query_t.tolist(), p.slot.tolist(), p.db_t.tolist(), strict=True))


def test_pickle_lookup_equals_shard_lookup(corpus: Corpus) -> None:
    """Postings from the pickle and from the migrated shard are the same multiset, for any query."""
    lib = legacy.open_library(corpus.pickles)
    rng = np.random.default_rng(1)
    for season, ps in lib.shards.items():
        keys = np.fromiter(ps.table, np.uint32)
        # stored hashes (some repeated), plus hashes that are in no episode
        absent = rng.integers(0, 1 << 21, 200, dtype=np.uint32)
        q = np.concatenate([rng.choice(keys, 400), rng.choice(keys, 50), absent])
        hashes = Hashes(q.astype(np.uint32), rng.integers(0, 500, q.size).astype(np.uint32))
        with Shard.open(corpus.migrated / f"season_{season:02d}.lmdb") as shard:
            a, b = ps.lookup(hashes), shard.lookup(hashes)
            crowded_skipped = shard.lookup(hashes, max_postings=2)
        assert a.looked_up == b.looked_up
        assert a.slot.size > 400
        assert _rows(a) == _rows(b)
        # a hash in a crowded shard bucket is skipped the same way in both modes
        assert 0 < crowded_skipped.slot.size < b.slot.size
        assert _rows(ps.lookup(hashes, max_postings=2)) == _rows(crowded_skipped)


def test_pickle_library_has_the_library_interface(corpus: Corpus) -> None:
    from citywok.matcher.store.library import Library

    with legacy.open_library(corpus.pickles) as lib, Library.open(corpus.migrated) as ref:
        assert lib.version == "legacy-pickle" and lib.params == ref.params
        assert lib.seasons == ref.seasons == [1, 2]
        assert lib.episode_count() == ref.episode_count() == 5
        assert lib.nbytes() == sum(p.stat().st_size for p in corpus.pickles.glob("season_*.pkl"))
        assert not lib.writable and not any(s.writable for s in lib.shards.values())
        for n in lib.seasons:
            assert [(e.slot, e.id, e.title, e.duration, e.sha256, e.hashes) for e in lib.shards[n].episodes()] == [
                (e.slot, e.id, e.title, e.duration, e.sha256, e.hashes) for e in ref.shards[n].episodes()]
            assert lib.episode(n, 0) == ref.episode(n, 0)
            mine, theirs = lib.shards[n].meta(), ref.shards[n].meta()
            assert {k: mine[k] for k in ("hash_count", "posting_count", "episode_count", "total_seconds")} == {
                k: theirs[k] for k in ("hash_count", "posting_count", "episode_count", "total_seconds")}
        lib.close()
        assert lib.shards == {}


def test_a_posting_of_an_unlisted_episode_is_no_evidence(tmp_path: Path) -> None:
    db = legacy.new_season(1)
    db["episodes"].append({"id": "S01E01", "title": "one", "duration": 2.0, "sha256": "ab"})
    db["hashes"] = {5: [("S01E01", 3), ("GHOST", 9)]}
    season = legacy.PickleSeason(tmp_path / "season_01.pkl", db)
    p = season.lookup(Hashes(np.array([5, 5], np.uint32), np.array([0, 1], np.uint32)))
    assert _rows(p) == [(0, 0, 3), (1, 0, 3)]
