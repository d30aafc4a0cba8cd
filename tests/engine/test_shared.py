"""Episodes that share a theme, credits and a reused cue: ambiguity is reported, not guessed."""

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.identify import identify_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store import shared
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import Shard

R = 8000
THEME, BODY, CREDITS = 30, 120, 20


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    theme, credits, cue = synth.episode(5000, THEME, R), synth.episode(5001, CREDITS, R), synth.episode(5002, 15, R)
    eps = {f"S01E{k + 1:02d}": np.concatenate([theme, synth.episode(6000 + k, BODY, R), credits]) for k in range(8)}
    e9, e10 = synth.episode(7000, 100, R), synth.episode(7001, 100, R)
    eps["S01E09"] = np.concatenate([e9[: 40 * R], cue, e9[40 * R :]])  # the cue at 0:40
    eps["S01E10"] = np.concatenate([e10[: 70 * R], cue, e10[70 * R :]])  # and at 1:10
    vdir = tmp_path_factory.mktemp("series") / "v1"
    with Shard.create(vdir / "season_01.lmdb", DEFAULT_PARAMS, 1) as s:
        for eid, x in eps.items():
            s.add_episode(eid, fingerprint_pcm(x), x.size / R, "0" * 64)
        shared.update(s)
    lib = Library.open(vdir)
    yield eps, lib
    lib.close()


def cut(x, start, seconds=5.0):
    return x[int(start * R) : int((start + seconds) * R)]


def test_segments_found_and_recorded(series):
    _, lib = series
    segs = sorted(lib.shared[1], key=lambda s: -len(s.occurrences))
    assert [len(s.occurrences) for s in segs] == [8, 8, 2]
    theme = next(s for s in segs if all(o.start < 1 for o in s.occurrences))
    assert all(abs(o.end - THEME) < 2 for o in theme.occurrences)
    credits = next(s for s in segs if s is not theme and len(s.occurrences) == 8)
    assert all(abs(o.start - (THEME + BODY)) < 1.5 for o in credits.occurrences)
    cue = segs[2]
    assert {(o.episode_id, round(o.start)) for o in cue.occurrences} == {("S01E09", 40), ("S01E10", 70)}


@pytest.mark.parametrize("start", [2.0, 17.5])
def test_theme_clip_is_ambiguous_and_lists_all_eight(series, start):
    eps, lib = series
    r = identify_pcm(lib, synth.add_noise(cut(eps["S01E03"], start), 10))
    assert r.match and r.ambiguous and r.episode_id is None
    assert sorted(c.episode_id for c in r.episodes) == [f"S01E{k:02d}" for k in range(1, 9)]
    assert all(abs(c.offset_seconds - start) <= 0.1 for c in r.episodes)
    assert r.shared_segment.startswith("shared by 8 episodes, 0:00-0:3")


def test_credits_clip_is_ambiguous(series):
    eps, lib = series
    r = identify_pcm(lib, cut(eps["S01E05"], THEME + BODY + 6))
    assert r.ambiguous and len(r.episodes) == 8 and "shared by 8 episodes" in r.shared_segment


def test_reused_cue_lists_both_episodes_with_their_offsets(series):
    eps, lib = series
    r = identify_pcm(lib, cut(eps["S01E09"], 44))
    assert r.ambiguous
    assert {(c.episode_id, round(c.offset_seconds)) for c in r.episodes} == {("S01E09", 44), ("S01E10", 74)}
    assert "S01E09" in r.shared_segment and "S01E10" in r.shared_segment


@pytest.mark.parametrize("eid,start", [("S01E02", 60.0), ("S01E07", 100.0), ("S01E10", 20.0)])
def test_unique_content_is_answered_uniquely(series, eid, start):
    eps, lib = series
    r = identify_pcm(lib, cut(eps[eid], start))
    assert r.match and not r.ambiguous and r.episode_id == eid and abs(r.offset_seconds - start) <= 0.1


@pytest.mark.parametrize("eid,start", [("S01E04", THEME - 2.5), ("S01E06", THEME + BODY - 3.0)])
def test_clip_straddling_the_boundary_names_the_episode(series, eid, start):
    eps, lib = series
    r = identify_pcm(lib, cut(eps[eid], start, 6.0))
    assert r.match and not r.ambiguous and r.episode_id == eid and abs(r.offset_seconds - start) <= 0.1


def _segments(segs):
    return sorted(tuple(sorted((o.episode_id, round(o.start), round(o.end)) for o in s.occurrences)) for s in segs)


def test_segments_updated_for_changed_episodes_match_a_full_pass(tmp_path, monkeypatch):
    """Adding, replacing and removing episodes updates the stored segments from the pairs of the
    changed episodes alone, and gives what a pass over the whole season gives."""
    theme = synth.episode(5100, THEME, R)
    eps = {f"S01E{k + 1:02d}": np.concatenate([theme, synth.episode(6100 + k, 60, R)]) for k in range(5)}
    with Shard.create(tmp_path / "season_01.lmdb", DEFAULT_PARAMS, 1) as s:
        for eid in ("S01E01", "S01E02", "S01E03"):
            s.add_episode(eid, fingerprint_pcm(eps[eid]), eps[eid].size / R, "0" * 64)
        assert not s.shared_recorded()
        shared.update(s, ["S01E01", "S01E02", "S01E03"])  # nothing stored yet: the whole season
        assert _segments(shared.load(s)) == _segments(shared.find_shared(s))
        for eid in ("S01E04", "S01E05"):
            s.add_episode(eid, fingerprint_pcm(eps[eid]), eps[eid].size / R, "0" * 64)
        full_pass = shared.find_shared
        with monkeypatch.context() as m:  # new episodes only: their pairs, not the season's
            m.setattr(shared, "find_shared", lambda *a, **k: pytest.fail("a full pass for an addition"))
            got = shared.update(s, ["S01E04", "S01E05"])
        assert [len(seg.occurrences) for seg in got] == [5]
        assert _segments(got) == _segments(full_pass(s))
        # S01E02 replaced by audio without the theme, S01E05 removed
        s.add_episode("S01E02", fingerprint_pcm(synth.episode(6200, 90, R)), 90, "1" * 64)
        shared.update(s, ["S01E02"])
        assert s.remove_episode("S01E05")
        got = shared.update(s, [])
        assert _segments(got) == _segments(shared.find_shared(s))
        assert sorted(o.episode_id for o in got[0].occurrences) == ["S01E01", "S01E03", "S01E04"]


# a shard's frames stop at 2**19 (2.3 h); a legacy season's go on: 3e6 frames is 13 h, 1e8 frames do not
# fit in a uint64 beside their pair key
@pytest.mark.parametrize("start", [0, 50_000, 3_000_000, 100_000_000])
def test_a_shared_run_is_placed_alike_at_any_time(tmp_path, start):
    """The pair sort packs times beside the keys when they fit in 64 bits and sorts them apart when
    they do not (a legacy season's times are unbounded): both place the run where it is."""
    from citywok.matcher.engine.landmarks import Hashes
    from citywok.matcher.legacy.ingest import PickleSeasonWriter

    rng = np.random.default_rng(3)
    common = rng.choice(1 << 20, 300, replace=False).astype(np.uint32)
    own = rng.choice(1 << 20, 600, replace=False).astype(np.uint32) | np.uint32(1 << 20)
    run_t = np.arange(300, dtype=np.uint32) * 3  # 300 hashes over 14 s
    season = PickleSeasonWriter(tmp_path / "season_01.pkl", DEFAULT_PARAMS, 1)
    for eid, at, rest in (("a", start, own[:300]), ("b", 700, own[300:])):
        t = np.concatenate([run_t + np.uint32(at), np.arange(300, dtype=np.uint32) * 3 + np.uint32(at + 2000)])
        season.add_episode(eid, Hashes(np.concatenate([common, rest]), t), 100.0, "0" * 64)
    frame = DEFAULT_PARAMS.frame_seconds
    (pair,) = shared.find_pairs(season)
    a, b = sorted(pair, key=lambda o: o.episode_id)
    assert (a.episode_id, b.episode_id) == ("a", "b")
    assert a.start == round(start * frame, 2) and b.start == round(700 * frame, 2)
    assert b.end - b.start == pytest.approx((897 + DEFAULT_PARAMS.target_dt_max) * frame, abs=0.02)


def test_pairs_sort_by_key_then_time_packed_or_not():
    rng = np.random.default_rng(4)
    key = rng.integers(0, 40, 5000).astype(np.uint64)
    t = rng.integers(0, 1 << 19, 5000).astype(np.uint32)
    for k in (key, key | np.uint64(1 << 50)):  # the second too wide to share a uint64 with 19-bit times
        order = np.lexsort((t, k))
        got_key, got_t = shared._sort_pairs(k, t, 19)
        assert np.array_equal(got_key, k[order]) and np.array_equal(got_t, t[order])
