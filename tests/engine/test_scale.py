"""Clips sped up, slowed down, time-stretched or pitch-shifted (FFmpeg's filters), found by the scale
search at the right offset in the episode's own time, with their factors; and what must not match."""

from dataclasses import replace

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine import edit, scale, scalesearch, timefit
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.identify import DEFAULT_POLICY, identify_pcm
from citywok.matcher.engine.landmarks import landmarks
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.engine.peaks import fine_peaks
from citywok.matcher.engine.ranking import halves
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import Shard

RATE = 8000


def edited(x: np.ndarray, start: float, seconds: float, **factors: float) -> np.ndarray:
    """``seconds`` of clip, cut at ``start`` of the episode and edited by ``factors``."""
    faster = factors.get("speed", 1.0) * factors.get("tempo", 1.0)
    source = x[int(start * RATE): int((start + seconds * faster) * RATE)]
    return synth.rescale(source, RATE, **factors)


@pytest.mark.parametrize("eid,start,factors,time_scale,pitch_scale", [
    ("S01E02", 12.0, {"speed": 1.2}, 1.2, 1.2),
    ("S01E04", 30.5, {"tempo": 0.85}, 0.85, 1.0),
    ("S01E05", 21.0, {"pitch": 2 ** (3 / 12)}, 1.0, 2 ** (3 / 12)),
    ("S01E03", 8.0, {"speed": 0.8}, 0.8, 0.8),
    ("S01E06", 17.0, {"tempo": 1.15, "pitch": 2 ** (2 / 12)}, 1.15, 2 ** (2 / 12)),  # off the three lines
    ("S01E01", 26.5, {"speed": 1.1, "pitch": 2 ** (-3 / 12)}, 1.1, 1.1 * 2 ** (-3 / 12)),
])
@pytest.mark.parametrize("which", ["library", "triplet_library"])  # the scale hypotheses; the triplets first
def test_edited_clip_found_at_its_offset_with_its_factors(request, which, episodes, eid, start, factors, time_scale,
                                                          pitch_scale):
    r = identify_pcm(request.getfixturevalue(which), edited(episodes[eid], start, 6, **factors))
    assert r.match and not r.ambiguous and r.episode_id == eid
    assert abs(r.offset_seconds - start) <= 0.1
    assert r.time_scale == pytest.approx(time_scale, rel=0.02)
    assert r.pitch_scale == pytest.approx(pitch_scale, rel=0.02)
    assert r.speed == r.time_scale
    assert r.edit == edit.describe(r.time_scale, r.pitch_scale) and r.edit


@pytest.mark.parametrize("speed", [1.03, 0.97, 1.17])
def test_a_speed_between_the_grid_steps_is_estimated_finer_than_the_grid(library, episodes, speed):
    """The page prints the factor to two decimals: it must be right to half a percent, not to a step."""
    for start in (5.0, 19.0):
        r = identify_pcm(library, edited(episodes["S01E03"], start, 7, speed=speed))
        assert r.match and r.episode_id == "S01E03" and abs(r.offset_seconds - start) <= 0.1
        assert r.time_scale == pytest.approx(speed, abs=0.004)


def test_the_slope_through_the_hits_averages_their_rounding_away():
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 220, 120))
    db = np.rint(500 + 1.013 * t + rng.uniform(-0.5, 0.5, t.size)).astype(np.int64)
    chance = rng.integers(0, 2000, 60)  # hits of the same slot far from the line, and of another slot
    postings = Postings(np.concatenate([t, rng.integers(0, 220, 60), t]), np.repeat([4, 4, 9], [t.size, 60, t.size]),
                        np.concatenate([db, chance, db - 300]), 0)
    line = timefit.fitted_line(postings, 4, 500)
    assert line is not None
    assert line.slope == pytest.approx(1.013, abs=0.001) and line.offset == pytest.approx(500, abs=0.3)
    assert timefit.fitted_line(postings, 5, 500) is None  # no hits: no line to fit


def _sweep_one_scale_at_a_time(postings: Postings, slot: int, offset: int, time_scale: float, span: float,
                               step: float) -> timefit.Fit:
    """fit_time_scale as first written: a sort of the hits' offsets per scale tried."""
    window = int(span * int(postings.query_t.max(initial=0))) + 3
    m = (postings.slot == slot) & (np.abs(postings.offset - offset) <= window)
    if not m.any():
        return timefit.Fit(time_scale, offset, 0, 0)
    t, db = postings.query_t[m].astype(np.float64), postings.db_t[m]
    steps = np.arange(-round(span / step), round(span / step) + 1) * step
    scores, offsets = np.zeros(steps.size, np.int64), np.zeros(steps.size, np.int64)
    for k, r in enumerate(steps):
        values, counts = np.unique(db - np.rint(t * (1 + r)).astype(np.int64), return_counts=True)
        next_to = np.diff(values) == 1
        pooled = counts.copy()
        pooled[1:] += np.where(next_to, counts[:-1], 0)
        pooled[:-1] += np.where(next_to, counts[1:], 0)
        i = int(np.argmax(pooled))
        scores[k], offsets[k] = pooled[i], values[i]
    top = np.flatnonzero(scores == scores.max())
    k = int(top[np.argmin(np.abs(top - top.mean()))])
    return timefit.Fit(time_scale * (1 + steps[k]), int(offsets[k]), int(scores[k]), int(scores[steps.size // 2]))


@pytest.mark.parametrize("seed", range(40))
def test_the_time_scale_sweep_counts_as_a_sort_per_scale_would(seed):
    """The sweep counts every scale in one histogram; it must pick what sorting each scale's offsets picks,
    ties and sparse hits included (a pile counts only at an offset that holds a hit)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    scale_ = rng.uniform(0.94, 1.06)
    t = rng.integers(0, 300, n)
    db = np.rint(700 + scale_ * t + rng.uniform(-1, 1, n)).astype(np.int64)
    chance = rng.random(n) < rng.uniform(0, 0.7)
    db[chance] = 700 + t[chance] + rng.integers(-25, 25, int(chance.sum()))
    postings = Postings(t, np.where(rng.random(n) < 0.1, 9, 4), db, 0)
    for span, step in ((0.06, 0.003), (0.012, 0.001), (0.025, 0.001)):
        for at in (700, 705, 2000):
            assert timefit.fit_time_scale(postings, 4, at, 1.0, span, step) == \
                _sweep_one_scale_at_a_time(postings, 4, at, 1.0, span, step)


@pytest.mark.parametrize("factors", [{}, {"speed": 1.2}, {"tempo": 0.85}, {"pitch": 2 ** (3 / 12)},
                                     {"tempo": 1.15, "pitch": 2 ** (2 / 12)}])
@pytest.mark.parametrize("which", ["library", "triplet_library"])
def test_unindexed_audio_is_not_matched_at_any_scale(request, which, factors):
    for seed in (901, 902, 903):
        r = identify_pcm(request.getfixturevalue(which), edited(synth.episode(seed, 20, RATE), 5, 6, **factors))
        assert not r.match and r.episode_id is None and r.offset_seconds is None


@pytest.mark.parametrize("which", ["library", "triplet_library"])
def test_a_five_percent_tempo_change_is_never_answered_decisively_at_a_wrong_offset(request, which, episodes):
    library = request.getfixturevalue(which)
    answered = 0
    for k, (eid, x) in enumerate(episodes.items()):
        for start in (4.0 + 7 * k, 33.0 - 3 * k):
            for tempo in (1.05, 0.95):
                r = identify_pcm(library, edited(x, start, 5, tempo=tempo))
                if r.match and not r.ambiguous:
                    answered += 1
                    assert r.episode_id == eid and abs(r.offset_seconds - start) <= 0.1, (eid, start, tempo, r)
                    assert r.time_scale == pytest.approx(tempo, rel=0.02)
    assert answered >= 20  # of 24: it is found, not merely refused


def test_an_unedited_clip_says_so(library, episodes):
    r = identify_pcm(library, episodes["S01E01"][8 * RATE: 13 * RATE])
    assert r.match and (r.time_scale, r.pitch_scale, r.edit) == (1.0, 1.0, None)


def test_the_dense_peaks_thinned_give_the_clips_own_hashes(episodes):
    x = episodes["S01E03"][: 9 * RATE]
    peaks = scale.clip_peaks(scale.clip_spectrogram(x, DEFAULT_PARAMS), DEFAULT_PARAMS, 20)
    ours = landmarks(scale.plain_peaks(peaks, DEFAULT_PARAMS), DEFAULT_PARAMS)
    theirs = fingerprint_pcm(x)
    assert np.array_equal(ours.hash, theirs.hash) and np.array_equal(ours.t, theirs.t)


def test_the_fast_pairing_picks_what_landmarks_picks(episodes):
    x = episodes["S01E04"][: 12 * RATE]
    p = DEFAULT_PARAMS
    peaks = scale.plain_peaks(scale.clip_peaks(scale.clip_spectrogram(x, p), p, 20), p)
    fast = scale.top_landmarks(peaks, p, p.fanout, p.target_dt_max)
    slow = landmarks(peaks, p)
    assert np.array_equal(fast.hash, slow.hash) and np.array_equal(fast.t, slow.t)


def test_hypotheses_are_batched_apart_in_time():
    p = DEFAULT_PARAMS
    hyps = [scale.Hypothesis(1.25, 1.0), scale.Hypothesis(0.8, 1.1)]
    peaks = scale.clip_peaks(scale.clip_spectrogram(synth.episode(7, 8, RATE), p), p, 20)
    batch = scale.batch_hashes(peaks, hyps, p)
    for k, h in enumerate(hyps):
        one = scale.batch_hashes(peaks, [h], p)
        mine = (batch.t >> scale.T_BITS) == k
        assert np.array_equal(batch.hash[mine], one.hash)
        assert np.array_equal(batch.t[mine] & ((1 << scale.T_BITS) - 1), one.t)


@pytest.mark.parametrize("time_scale,pitch_scale,words", [
    (1.0, 1.0, None), (1.004, 0.996, None), (1.25, 1.25, "sped up 1.25x"), (0.8, 0.8, "slowed down to 0.80x"),
    (0.8, 1.0, "tempo 0.80x, pitch kept"), (1.0, 2 ** (3 / 12), "pitch +3.0 semitones, tempo kept"),
    (1.1, 1.1 * 2 ** (-2 / 12), "tempo 1.10x, pitch -0.3 semitones"),
])
def test_the_edit_in_words(time_scale, pitch_scale, words):
    assert edit.describe(time_scale, pitch_scale) == words


def test_the_grid_spans_the_edits_uploaders_make():
    hyps = scale.ScaleGrid().hypotheses()
    times = [h.time_scale for h in hyps]
    pitches = [h.pitch_scale for h in hyps]
    assert min(times) <= 0.8 and max(times) >= 1.25 and min(pitches) <= 2 ** (-3 / 12) and max(pitches) >= 2 ** 0.25
    assert scale.Hypothesis(1.0, 1.0) not in hyps


@pytest.mark.parametrize("seconds", [1.0, 3.0, 4.0, 5.0, 10.0, 30.0])
def test_a_longer_clip_pairs_fewer_per_anchor_in_the_coarse_searches(seconds):
    grid = scale.ScaleGrid()
    mine = grid.for_clip(seconds)
    for full, capped in ((grid.line_fanout, mine.line_fanout), (grid.coarse_fanout, mine.coarse_fanout)):
        assert 1 <= capped <= full
        assert capped in (full, 1) or capped * seconds <= grid.coarse_pairs + seconds / 2
    assert mine.line_fanout == grid.line_fanout if seconds <= 3 else mine.line_fanout < grid.line_fanout
    assert mine.lines() == grid.lines() and mine.plane() == grid.plane()


def test_fine_peaks_find_a_peak_between_frames_and_bins():
    p = DEFAULT_PARAMS
    t0, f0 = 20.3, 40.7  # frame, bin (absolute)
    rows, bins = np.mgrid[0:48, p.min_bin:p.max_bin]
    spec = (-((rows - t0) / 3.0) ** 2 - ((bins - f0) / 2.0) ** 2).astype(np.float32)
    peaks = scale.clip_peaks(spec, p, 20)
    (k,) = np.flatnonzero((peaks.t == 20) & (peaks.f == 41))
    fine = fine_peaks(spec, peaks, p)
    assert abs(fine.t[k] - t0) < 0.05 and abs(fine.f[k] - f0) < 0.05
    assert np.all(np.abs(fine.t - peaks.t) <= 0.5) and np.all(np.abs(fine.f - peaks.f) <= 0.5)


@pytest.mark.parametrize("hits", [0, 1, 1000, 5000, 100_000])
def test_the_coarse_table_grows_with_the_hits(hits):
    size = scale.table_size(hits)
    assert size & (size - 1) == 0 and size >= max(1 << scale.TABLE_MIN_BITS, scale.CELLS_PER_HIT * hits)
    assert size < max(2 << scale.TABLE_MIN_BITS, 2 * scale.CELLS_PER_HIT * hits)


def test_the_plane_covers_the_pairs_off_the_lines_in_reach_of_its_refinement():
    grid = scale.ScaleGrid()
    times, pitches = grid.plane()
    reach = (1 + grid.plane_time_step) ** 0.5  # a truth between two time scales is half a step from one
    assert times[0] <= 0.8 * reach and times[-1] >= 1.25 / reach and 1.0 in times and 1.0 not in pitches
    half = 1 + grid.pitch_step / 2
    assert pitches[0] <= 2 ** (-3 / 12) * half and pitches[-1] >= 2 ** 0.25 / half
    pitch_line = next(line for line in grid.lines() if all(h.time_scale == 1 for h in line))
    assert set(pitches) <= {h.pitch_scale for h in pitch_line}
    assert max(b / a for a, b in zip(times, times[1:], strict=False)) <= 1 + grid.plane_time_step + 1e-9


def test_the_plane_hashes_are_the_moved_peaks_own_pairs(episodes):
    """Pairing once per time scale and moving the pairs' frequencies gives hashes of the peaks moved in
    both; it misses some where a pitch moves peaks out of the band (thinning would pick others)."""
    p, grid = DEFAULT_PARAMS, scale.ScaleGrid()
    peaks = scale.clip_peaks(scale.clip_spectrogram(episodes["S01E02"][: 6 * RATE], p), p, 20)
    batch, hyps = scale.plane_hashes(peaks, p, grid)
    for k in (0, len(hyps) // 2, len(hyps) - 1):
        mine = (batch.t >> scale.T_BITS) == k
        one = scale.batch_hashes(peaks, [hyps[k]], p, grid.coarse_fanout, grid.coarse_dt_max)
        shared = np.isin(batch.hash[mine], one.hash).sum()
        assert shared >= 0.8 * mine.sum() >= 0.8 * 0.7 * one.hash.size > 0


def _found(*scores: int) -> list[scale.Found]:
    return [scale.Found(k, 100, s, scale.Hypothesis(1.1, 1.1)) for k, s in enumerate(scores)]


@pytest.mark.parametrize("scores,stands", [
    ((), False), ((9,), True), ((3,), False), ((12, 6), True), ((12, 7), False), ((5, 2), True), ((3, 1), False),
])
def test_a_coarse_winner_stands_out_of_a_crowd_of_equals(scores, stands):
    assert scale.stands_out(_found(*scores), 4, 2.0) is stands


class _Near:
    """A catalogue that records where its second looks went."""

    def __init__(self, library) -> None:
        self.library, self.near = library, []

    def __getattr__(self, name: str):
        return getattr(self.library, name)

    def lookup_near(self, hashes, slots):
        self.near.append({self.library.entry(s)[0] for s in slots})
        return self.library.lookup_near(hashes, slots)


def test_a_coarse_search_looks_its_second_half_up_only_where_the_first_found_candidates(tmp_path, episodes):
    vdir = tmp_path / "v1"
    for season, ids in ((1, ["S01E01", "S01E02"]), (2, ["S01E03", "S01E04"]), (3, ["S01E05", "S01E06"])):
        with Shard.create(vdir / f"season_{season:02d}.lmdb", DEFAULT_PARAMS, season) as shard:
            for eid in ids:
                shard.add_episode(eid, fingerprint_pcm(episodes[eid]), len(episodes[eid]) / RATE, "0" * 64)
    p, grid = DEFAULT_PARAMS, DEFAULT_POLICY.grid.for_clip(6.0)
    speed_line = grid.lines()[1]

    def coarse(pcm: np.ndarray, policy=DEFAULT_POLICY):
        spec = scale.clip_spectrogram(pcm, p)
        fine = fine_peaks(spec, scale.clip_peaks(spec, p, policy.dense_peaks), p)
        hashes = scale.line_hashes(fine, p, grid, speed_line)
        near = _Near(lib)
        found, looked_up = scalesearch.coarse(near, hashes, speed_line, policy)
        first = np.unique(halves(hashes)[0].hash).size
        return found, looked_up, near.near, np.unique(hashes.hash).size, first

    with Library.open(vdir) as lib:
        found, looked_up, near, distinct, _ = coarse(edited(episodes["S01E04"], 30.0, 6, speed=1.2))
        season, ep = lib.entry(found[0].slot)
        assert (season, ep.id) == (2, "S01E04") and found[0].hypothesis.time_scale == pytest.approx(1.2, rel=0.02)
        assert len(near) == 1 and 2 in near[0] and len(near[0]) < 3  # the second half skipped a season
        assert looked_up < 3 * distinct
        unknown = edited(synth.episode(907, 30, RATE), 5, 6, speed=1.1)
        _, looked_up, near, _, first = coarse(unknown, replace(DEFAULT_POLICY, narrow_min_score=1000))
        assert near == [] and looked_up == 3 * first  # no candidates: the second half is looked up nowhere
