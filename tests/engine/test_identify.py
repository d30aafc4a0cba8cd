import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import DEFAULT_POLICY, Candidate, ClipTooShort, identify_pcm
from citywok.matcher.engine.scalesearch import verified as scale_verified

RATE = 8000


def clip(x: np.ndarray, start: float, seconds: float) -> np.ndarray:
    return x[int(start * RATE) : int((start + seconds) * RATE)]


@pytest.mark.parametrize("eid,start", [("S01E01", 3.25), ("S01E04", 41.0), ("S01E06", 54.5)])
def test_clean_clip_found_at_offset(library, episodes, eid, start):
    r = identify_pcm(library, clip(episodes[eid], start, 5))
    assert r.match and r.episode_id == eid and r.season == 1
    assert abs(r.offset_seconds - start) <= 0.05
    assert r.confidence > 0.5 and r.score >= 12
    assert r.candidates[0].episode_id == eid


@pytest.mark.parametrize("snr", [10, 5, 0])
def test_noise_survived(library, episodes, snr):
    r = identify_pcm(library, synth.add_noise(clip(episodes["S01E02"], 20, 5), snr, seed=snr))
    assert r.match and r.episode_id == "S01E02" and abs(r.offset_seconds - 20) <= 0.1


@pytest.mark.parametrize("fmt,bitrate", [("mp3", 32000), ("opus", 16000)])
def test_reencoded_clip_survived(library, episodes, fmt, bitrate):
    data = synth.encode(clip(episodes["S01E03"], 12, 5), RATE, fmt, bitrate)
    r = identify_pcm(library, decode(data, RATE))
    assert r.match and r.episode_id == "S01E03" and abs(r.offset_seconds - 12) <= 0.1


@pytest.mark.parametrize("speed", [1.03, 0.97])
def test_speed_change_survived(library, episodes, speed):
    r = identify_pcm(library, synth.change_speed(clip(episodes["S01E05"], 30, 6), speed))
    assert r.match and r.episode_id == "S01E05" and abs(r.offset_seconds - 30) <= 0.1
    assert r.time_scale == r.speed == pytest.approx(speed, rel=0.005)
    assert r.pitch_scale == pytest.approx(speed, rel=0.01)


def test_unindexed_audio_not_matched(library):
    matches = [identify_pcm(library, synth.episode(900 + i, 5, RATE)).match for i in range(10)]
    assert sum(matches) == 0


def test_too_short(library, episodes):
    with pytest.raises(ClipTooShort):
        identify_pcm(library, clip(episodes["S01E01"], 0, 0.5))


def test_a_passage_heard_twice_in_an_episode_names_both_places(tmp_path):
    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.library import Library
    from citywok.matcher.store.shard import Shard

    x = synth.episode(77, 60, RATE)
    x[40 * RATE: 50 * RATE] = x[10 * RATE: 20 * RATE]  # a reprised cue
    with Shard.create(tmp_path / "v1" / "season_01.lmdb", DEFAULT_PARAMS, 1) as shard:
        shard.add_episode("S01E01", fingerprint_pcm(x), 60, "0" * 64)
        shard.add_episode("S01E02", fingerprint_pcm(synth.episode(78, 60, RATE)), 60, "1" * 64)
    with Library.open(tmp_path / "v1") as lib:
        r = identify_pcm(lib, synth.add_noise(clip(x, 12, 5), 10, seed=1))
        assert r.match and r.episode_id == "S01E01"
        places = sorted([r.offset_seconds, *r.also_at])
        assert len(places) == 2 and abs(places[0] - 12) <= 0.1 and abs(places[1] - 42) <= 0.1
        unique = identify_pcm(lib, clip(x, 25, 5))
        assert unique.match and abs(unique.offset_seconds - 25) <= 0.1 and unique.also_at == []


def test_clear_clips_are_decided_by_half_their_hashes_and_doubtful_ones_by_all(library, episodes):
    from citywok.matcher.engine.fingerprint import fingerprint_pcm

    clear = clip(episodes["S01E03"], 30, 5)
    r = identify_pcm(library, clear)
    distinct = len(np.unique(fingerprint_pcm(clear).hash))
    assert r.match and r.episode_id == "S01E03" and r.score >= 20
    assert r.hashes_looked_up < 0.65 * distinct  # one shard: the half pass alone
    noisy = synth.add_noise(clip(episodes["S01E03"], 30, 5), -9, seed=4)
    r = identify_pcm(library, noisy)
    assert r.hashes_looked_up >= len(np.unique(fingerprint_pcm(noisy).hash))  # the full pass ran too


def test_aligned_hashes_from_one_moment_of_the_clip_are_not_a_match():
    """Unindexed music reached a dozen or more aligned hashes by sharing a chord with an indexed piece:
    the threshold is on the evidence spread over the clip, not on the plain count."""
    from citywok.matcher.engine.identify import Candidate
    from citywok.matcher.engine.ranking import decisive

    other = Candidate("S01E02", 1, 80.0, 5, spread=5)
    assert not decisive([Candidate("S01E01", 1, 10.0, 30, spread=8), other], DEFAULT_POLICY)
    assert decisive([Candidate("S01E01", 1, 10.0, 30, spread=DEFAULT_POLICY.min_score), other], DEFAULT_POLICY)


def test_the_answer_reports_the_spread_its_threshold_was_applied_to(library, episodes):
    r = identify_pcm(library, clip(episodes["S01E02"], 20, 5))
    assert r.match and r.spread >= DEFAULT_POLICY.min_score and r.spread <= r.score
    assert r.candidates[0].spread == r.spread


@pytest.mark.parametrize("best,runner,verified", [
    ((30, 25), 16, True),  # spread of scale_strong: the plain margin will do
    ((40, 18), 13, True), ((40, 18), 14, False),  # spread of scale_min_score: three times the runner-up
    ((20, 13), 5, True), ((20, 13), 6, False),  # less spread: four times
    ((30, 11), 1, False),  # too little spread at any margin
])
def test_a_scaled_answer_needs_more_margin_the_less_spread_it_has(best, runner, verified):
    score, spread_ = best
    cands = [Candidate("S01E01", 1, 10.0, score, spread=spread_), Candidate("S01E02", 1, 50.0, runner, spread=runner)]
    assert scale_verified(cands, DEFAULT_POLICY) is verified
