"""The series benchmark's generator and clip cutter make what they claim (real espeak-ng, real PyAV)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.decode import decode

from bench import series_clips, series_cut, series_gen
from bench.series_cut import Clip, cut_clips, row_name
from bench.series_scale import scaled_clips

RATE = series_gen.RATE
MINUTES = (0.5, 0.6)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, series_gen.Split, Path]:
    """Two indexed and one unseen short episode over generated music tracks."""
    root = tmp_path_factory.mktemp("series")
    tracks = []
    for k in range(12):
        path = root / f"track{k:02d}.flac"
        path.write_bytes(synth.encode(synth.episode(900 + k, 40, RATE), RATE, "flac"))
        tracks.append(path)
    episodes, split = series_gen.build_series(tracks, 2, 1, seed=3, cache=root / "cache", minutes=MINUTES)
    return episodes, split, root


def _tone(freq: float, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / RATE)[int(spec.argmax())])


def test_episodes_share_the_theme_and_last_their_length(series: tuple) -> None:
    episodes, split, _root = series
    assert [e.id for e in episodes] == ["S01E01", "S01E02", "unseen01"]
    assert [e.indexed for e in episodes] == [True, True, False]
    pcms = [decode(e.path, RATE) for e in episodes]
    for e, x in zip(episodes, pcms, strict=True):
        assert MINUTES[0] * 60 <= e.seconds <= MINUTES[1] * 60 + 0.01
        assert abs(x.size / RATE - e.seconds) < 0.01
    theme = int(series_gen.THEME_SECONDS * RATE)
    np.testing.assert_allclose(pcms[0][:theme] / np.abs(pcms[0][:theme]).max(),
                               pcms[2][:theme] / np.abs(pcms[2][:theme]).max(), atol=2e-3)
    assert not np.allclose(pcms[0][theme:theme + RATE * 5], pcms[1][theme:theme + RATE * 5], atol=0.05)
    assert not set(split.beds) & set(split.unseen_beds)
    assert not set(split.uploader) & (set(split.beds) | set(split.unseen_beds) | {split.theme})


def test_series_is_deterministic_and_cached(series: tuple) -> None:
    episodes, split, root = series
    again = series_gen.episode_pcm(3, 1, True, split, MINUTES)
    np.testing.assert_allclose(again, decode(episodes[0].path, RATE), atol=1e-3)
    stamp = Path(episodes[0].path).stat().st_mtime_ns
    tracks = sorted(root.glob("track*.flac"))
    cached, _ = series_gen.build_series(tracks, 2, 1, seed=3, cache=root / "cache", minutes=MINUTES)
    assert cached == episodes and Path(episodes[0].path).stat().st_mtime_ns == stamp


def test_speech_is_speech() -> None:
    line = series_gen.speak("In the beginning God created the heaven and the earth.", series_gen.CAST[0])
    assert 1.5 < line.size / RATE < 6
    assert abs(float(np.sqrt(np.mean(line ** 2))) - series_gen.SPEECH_RMS) < 1e-3


@pytest.mark.parametrize(("kind", "factor", "freq", "length"), [
    ("speed", 1.25, 550.0, 4.0), ("speed", 0.8, 352.0, 6.25), ("tempo", 1.25, 440.0, 4.0),
    ("tempo", 0.8, 440.0, 6.25), ("pitch", 3, 440 * 2 ** 0.25, 5.0), ("pitch", -2, 440 * 2 ** (-1 / 6), 5.0)])
def test_edits_scale_time_and_frequency(kind: str, factor: float, freq: float, length: float) -> None:
    y = series_clips.scaled(_tone(440, 5), RATE, kind, factor)
    assert abs(y.size / RATE - length) < 0.06
    assert abs(_peak_hz(y) - freq) < 4


@pytest.mark.parametrize(("time_scale", "pitch_scale"), [(1.15, 2 ** (2 / 12)), (0.85, 2 ** (-3 / 12)),
                                                      (1.1, 1.1 * 2 ** (-3 / 12))])
def test_combined_edits_scale_time_and_frequency_apart(time_scale: float, pitch_scale: float) -> None:
    y = series_clips.combined(_tone(440, 5), RATE, time_scale, pitch_scale)
    assert abs(y.size / RATE - 5 / time_scale) < 0.06
    assert abs(_peak_hz(y) - 440 * pitch_scale) < 4


def test_a_combined_rows_factors() -> None:
    edits = {e.label: e for e in series_clips.EDITS}
    tempo, speed = edits["tempo 1.15 + pitch +2 st"], edits["speed 1.1 + pitch -3 st"]
    assert (tempo.time_scale, tempo.pitch_scale) == (1.15, pytest.approx(2 ** (2 / 12)))
    assert (speed.time_scale, speed.pitch_scale) == (1.1, pytest.approx(1.1 * 2 ** (-3 / 12)))


def test_the_clip_cache_is_named_by_the_edits_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    now = series_cut.clip_folder(tmp_path, 24, 6, 50, 1000, "3,5")
    assert now == series_cut.clip_folder(tmp_path, 24, 6, 50, 1000, "3,5") and now.parent == tmp_path
    monkeypatch.setattr(series_cut, "EDITS", series_cut.EDITS[:-1])
    assert series_cut.clip_folder(tmp_path, 24, 6, 50, 1000, "3,5") != now


def test_overlay_is_at_the_asked_level() -> None:
    x, other = _tone(440, 3), _tone(1000, 2) * 0.1
    y = series_clips.overlay(x, other, RATE, 0.0)
    mixed = y - x
    assert y.size == x.size
    assert abs(np.sqrt(np.mean(mixed ** 2)) / np.sqrt(np.mean(x ** 2)) - 1) < 0.02


def test_clips_are_what_uploads_look_like(series: tuple, tmp_path: Path) -> None:
    episodes, split, _root = series
    clips = cut_clips(episodes, split, [3.0], 1, 2, seed=5, folder=tmp_path / "clips", workers=1)
    assert len(clips) == len(series_clips.EDITS) + 2
    assert sum(c.episode is None for c in clips) == 2
    by_row = {c.row: c for c in clips if c.episode}
    for c in clips:
        with av.open(c.path) as f:
            kinds = sorted(s.type for s in f.streams)
        assert kinds == (["audio", "video"] if c.container == "mp4" else ["audio"])
    for row, seconds in [("clean 3 s", 3.0), ("speed 1.25 3 s", 2.4), ("tempo 0.8 3 s", 3.75),
                         ("pitch +3 st 3 s", 3.0), ("tempo 1.15 + pitch +2 st 3 s", 3 / 1.15),
                         ("clean mp3 3 s", 3.0)]:
        assert abs(decode(by_row[row].path, RATE).size / RATE - seconds) < 0.08, row
    clean = by_row["clean 3 s"]
    source = decode(next(e.path for e in episodes if e.id == clean.episode), RATE)
    at = int(clean.start * RATE)
    got = decode(Path(clean.path).read_bytes(), RATE)[: 2 * RATE]
    want = source[at:at + 2 * RATE]
    assert np.corrcoef(got, want)[0, 1] > 0.9  # the clip starts where its truth says
    with av.open(io.BytesIO(Path(clean.path).read_bytes())) as f:
        assert f.streams.audio[0].codec_context.name == "aac" and f.streams.video[0].codec_context.name == "h264"


def test_the_scaling_table_times_every_speed_tempo_and_pitch_row_and_nothing_else() -> None:
    clips = [Clip(f"c{k}-{e.label}-{s}", row_name(e, s), None if k == 0 else "S01E01", 1.0, s, e.container)
             for e in series_clips.EDITS for s in (3.0, 5.0) for k in range(4)]
    chosen = scaled_clips(clips, 5.0, per_row=2)
    rows = {c.row for c in chosen}
    assert rows == {row_name(e, 5.0) for e in series_clips.EDITS if e.kind not in {"clean", "music", "voice", "phone"}}
    assert all(c.episode is not None and c.seconds == 5.0 for c in chosen) and len(chosen) == 2 * len(rows)


def test_padding_copies_postings_and_triplets_end_to_end_with_fresh_hashes():
    from citywok.matcher.engine.triplets import PAYLOAD_BITS

    from bench.series_scale import PAD_EPISODE_SECONDS, Source, pad_episodes

    rng = np.random.default_rng(1)
    frames = int(600 / 0.016)
    def some(high: int, n: int) -> np.ndarray:
        return rng.integers(0, high, n).astype(np.uint64)

    values = (np.sort(some(frames, 900)) << np.uint64(PAYLOAD_BITS)) | np.uint64(1234)
    src = Source((some(1 << 21, 5000), np.sort(some(frames, 5000))), (some(1 << 21, 900), values), 600.0)
    eps = pad_episodes([src], 2, seed=3)
    assert len(eps) == 2 and all(e.duration == PAD_EPISODE_SECONDS for e in eps)
    ep = eps[0]
    frame = ep.triplets.value >> np.uint64(PAYLOAD_BITS)
    assert int(frame.max()) < PAD_EPISODE_SECONDS / 0.016 and int(ep.hashes.t.max()) < PAD_EPISODE_SECONDS / 0.016
    assert np.all(ep.triplets.value & np.uint64((1 << PAYLOAD_BITS) - 1) == 1234)  # payloads kept
    first = ep.triplets.hash[: 900]  # the first copy: a bijection of the source's triplet hashes
    assert np.unique(first).size == np.unique(src.triplets[0]).size and not np.array_equal(first, src.triplets[0])
    assert len(ep.triplets) > 900 and len(ep.hashes) > 5000  # more than one copy, laid end to end
