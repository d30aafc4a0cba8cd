"""Triplet hashes (matcher/engine/triplets.py): unchanged by speed, tempo and pitch edits, stored and read
back by the shard, and the first stage of the scale search."""

import lmdb
import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine import triplets
from citywok.matcher.engine.decode import decode, iter_pcm
from citywok.matcher.engine.fingerprint import fingerprint_episode
from citywok.matcher.engine.identify import identify_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.engine.peaks import fine_peaks
from citywok.matcher.engine.scale import clip_peaks, clip_spectrogram
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import Shard

from tests.engine.test_scale import edited

P = DEFAULT_PARAMS
RATE = 8000


def clip_shapes(pcm: np.ndarray) -> triplets.Shapes:
    spec = clip_spectrogram(pcm, P)
    peaks = clip_peaks(spec, P, 20)
    return triplets.clip_shapes(peaks, fine_peaks(spec, peaks, P), P)


def test_values_pack_and_unpack():
    t, dt, f = np.array([0, 7, 2 ** 19 - 1]), np.array([1.25, 30.75, 12.0]), np.array([3.5, 254.0, 100.5])
    back = triplets.unpack_values(triplets.pack_values(t, dt, f))
    assert np.array_equal(back[0], t) and np.allclose(back[1], dt) and np.allclose(back[2], f)


def test_a_triplets_hash_does_not_change_with_the_scales():
    """The same three peaks moved by a time and a frequency factor hash alike (away from a bin edge)."""
    t = np.array([0.0, 9.3, 20.6])
    f = np.array([40.2, 61.7, 33.1])
    s = triplets.Shapes(t[:1], t[2:] - t[:1], f[:1], (t[1:2] - t[0]) / (t[2] - t[0]), np.log2(f[1:2] / f[0]),
                        np.log2(f[2:] / f[0]))
    for ts, ps in ((1.0, 1.0), (1.25, 1.0), (0.8, 1.19), (1.1, 0.84)):
        moved = triplets.Shapes(s.t / ts, s.dt / ts, s.f * ps, s.r, np.log2((f[1:2] * ps) / (f[0] * ps)),
                                np.log2((f[2:] * ps) / (f[0] * ps)))
        band = triplets.band(s.f, P)
        assert triplets.hashes(moved, band) == triplets.hashes(s, band)


def test_streaming_gives_the_whole_files_triplets():
    wav = synth.encode(synth.episode(5, 120, RATE), RATE, "wav")
    _, whole, _ = fingerprint_episode([decode(wav, RATE)])
    assert len(whole) > 120 * 5
    for chunk_seconds in (0.7, 13.3):
        _, streamed, _ = fingerprint_episode(iter_pcm(wav, RATE, chunk_seconds=chunk_seconds))
        a, b = np.lexsort((streamed.value, streamed.hash)), np.lexsort((whole.value, whole.hash))
        assert np.array_equal(streamed.hash[a], whole.hash[b]) and np.array_equal(streamed.value[a], whole.value[b])


@pytest.mark.parametrize("factors,time_scale,pitch_scale", [
    ({"speed": 1.25}, 1.25, 1.25), ({"tempo": 0.8}, 0.8, 1.0), ({"pitch": 2 ** (-3 / 12)}, 1.0, 2 ** (-3 / 12)),
    ({"tempo": 1.2, "pitch": 2 ** (-3 / 12)}, 1.2, 2 ** (-3 / 12)),
])
def test_the_vote_reads_the_scales_and_offset_from_the_hits(triplet_library, episodes, factors, time_scale,
                                                            pitch_scale):
    shapes = clip_shapes(edited(episodes["S01E04"], 22.0, 8, **factors))
    lo, hi = (0.78, 1.28)
    postings = triplet_library.lookup_triplets(triplets.query_hashes(shapes, P, (lo, hi)))
    found = triplets.vote(postings, shapes, (lo, hi), (lo, hi))
    best = found[0]
    assert triplet_library.entry(best.slot)[1].id == "S01E04"
    assert best.score >= max(4, 3 * max([f.score for f in found[1:]] + [1]))
    assert best.hypothesis.time_scale == pytest.approx(time_scale, rel=0.03)  # refinement and verification
    assert best.hypothesis.pitch_scale == pytest.approx(pitch_scale, rel=0.01)  # ... take it from here
    assert abs(best.offset * P.frame_seconds - 22.0) < 0.15


def test_the_shard_keeps_each_episodes_triplets_until_it_goes(tmp_path, episodes):
    path = tmp_path / "season_01.lmdb"
    made = {eid: fingerprint_episode([episodes[eid]]) for eid in ("S01E01", "S01E02")}
    with Shard.create(path, P, 1) as shard:
        for eid, (h, t, _) in made.items():
            shard.add_episode(eid, h, 60, "0" * 64, triplets=t)
        h, slot, value = shard.all_triplets()
        assert h.size == sum(len(t) for _, t, _ in made.values())
        mine = slot == shard.episode("S01E02").slot
        order = np.lexsort((made["S01E02"][1].value, made["S01E02"][1].hash))
        assert np.array_equal(value[mine], made["S01E02"][1].value[order])
        assert shard.check()["ok"]
        shard.remove_episode("S01E01")
        h, slot, _ = shard.all_triplets()
        assert h.size == len(made["S01E02"][1]) and set(slot.tolist()) == {shard.episode("S01E02").slot}
        assert shard.check()["ok"] and shard.meta()["triplet_count"] == h.size


def test_a_shard_without_triplets_is_still_searched_on_the_lines(tmp_path, episodes):
    """A shard written before triplets (no such database) serves: its triplet lookups come back empty,
    and a scaled clip is found by the scale hypotheses instead."""
    path = tmp_path / "v1" / "season_01.lmdb"
    with Shard.create(path, P, 1) as shard:
        for eid in ("S01E01", "S01E02", "S01E03"):
            h, t, _ = fingerprint_episode([episodes[eid]])
            shard.add_episode(eid, h, 60, "0" * 64, triplets=t)
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"triplets", txn=txn), delete=True)
    env.close()
    with Library.open(tmp_path / "v1") as lib:
        clip = edited(episodes["S01E02"], 12.0, 6, speed=1.2)
        shapes = clip_shapes(clip)
        assert lib.lookup_triplets(triplets.query_hashes(shapes, P, (0.78, 1.28))).slot.size == 0
        r = identify_pcm(lib, clip)
        assert r.match and r.episode_id == "S01E02" and abs(r.offset_seconds - 12.0) <= 0.1


def test_the_triplets_answer_with_a_fraction_of_the_lookups(library, triplet_library, episodes):
    clip = edited(episodes["S01E05"], 30.0, 6, tempo=1.2, pitch=2 ** (-3 / 12))
    lines, trip = identify_pcm(library, clip), identify_pcm(triplet_library, clip)
    for r in (lines, trip):
        assert r.match and r.episode_id == "S01E05" and abs(r.offset_seconds - 30.0) <= 0.1
        assert r.time_scale == pytest.approx(1.2, rel=0.02)
    assert trip.hashes_looked_up * 5 < lines.hashes_looked_up


class Counting:
    """A catalogue that counts its lookups (the engine's cost is in them)."""

    def __init__(self, library: Library) -> None:
        self.library, self.pairs, self.triplets = library, 0, 0

    def __getattr__(self, name: str):
        return getattr(self.library, name)

    def lookup(self, hashes):
        self.pairs += 1
        return self.library.lookup(hashes)

    def lookup_triplets(self, hashes):
        self.triplets += 1
        return self.library.lookup_triplets(hashes)


def test_an_edited_clip_costs_a_few_lookups_and_an_unknown_one_its_triplets_once(triplet_library, episodes):
    """Half the plain hashes find nothing, so the triplets are looked up before the other half, and their
    candidate is verified by half its hashes: three pair lookups in all. A clip of nothing indexed looks its
    triplets up once, and the denser ones once, however many searches follow."""
    counted = Counting(triplet_library)
    r = identify_pcm(counted, edited(episodes["S01E03"], 20.0, 8, tempo=0.85, pitch=2 ** (2 / 12)))
    assert r.match and r.episode_id == "S01E03" and abs(r.offset_seconds - 20.0) <= 0.1
    assert counted.pairs <= 3 and counted.triplets == 1
    unknown = Counting(triplet_library)
    assert not identify_pcm(unknown, edited(synth.episode(907, 20, RATE), 5, 6, speed=1.1)).match
    assert unknown.triplets == 2 and unknown.pairs > 3


def test_music_over_a_sped_up_clip_is_found_by_the_denser_triplets(triplet_library, episodes):
    """Music at 0 dB takes a clip's strongest peaks, so its first triplets find nothing; the denser second
    lookup does, for a fraction of the hashes the scale hypotheses would look up."""
    from dataclasses import replace

    from citywok.matcher.engine.identify import DEFAULT_POLICY

    for eid, start in (("S01E02", 12.0), ("S01E03", 20.0)):
        clip = edited(episodes[eid], start, 15, speed=1.25)
        music = synth.episode(950, 20, RATE)[: clip.size]
        mix = (clip / np.std(clip) + music / np.std(music)).astype(np.float32)
        counted = Counting(triplet_library)
        r = identify_pcm(counted, mix)
        assert r.match and r.episode_id == eid and abs(r.offset_seconds - start) <= 0.1
        assert r.time_scale == pytest.approx(1.25, rel=0.01) and counted.triplets == 2
        lines = identify_pcm(triplet_library, mix, replace(DEFAULT_POLICY, dense_triplet_min_score=10 ** 6))
        assert lines.match and lines.episode_id == eid  # the hypotheses find it too, at a higher cost
        assert r.hashes_looked_up * 3 < lines.hashes_looked_up
