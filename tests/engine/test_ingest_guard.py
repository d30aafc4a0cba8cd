"""What ingest refuses (look-alike episode ids, non-ASCII season numbers, audio with no fingerprints), and
the order it writes episodes in."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.ingest import _in_order, ingest_paths, season_path
from citywok.matcher.store.shard import Shard

from citywok import layout


@pytest.mark.parametrize("text", ["١", "1_0", "٣", "0", "100", "+1", " ", "1.0", "¹"])
def test_season_numbers_are_ascii_digits_from_1_to_99(text: str) -> None:
    with pytest.raises(ValueError):
        layout.parse_season(text)


def test_season_numbers_people_type() -> None:
    assert [layout.parse_season(t) for t in ("1", "07", " 12 ", "99")] == [1, 7, 12, 99]
    assert layout.season_number("season_١١.lmdb") is None


def test_a_look_alike_episode_id_and_silence_are_refused(tmp_path) -> None:
    eps = tmp_path / "eps"
    eps.mkdir()
    good = synth.episode(1, 20.0, 8000)
    (eps / "Ｓ01E01.flac").write_bytes(synth.encode(good, 8000, "flac"))  # fullwidth S
    (eps / "S01E02.flac").write_bytes(synth.encode(np.zeros(8000 * 600, np.float32), 8000, "flac"))
    (eps / "S01E03.flac").write_bytes(synth.encode(good, 8000, "flac"))
    results = {r.episode_id: r for r in ingest_paths([eps], 1, tmp_path / "data", workers=1)}
    assert results["Ｓ01E01"].status == "failed" and "ASCII" in results["Ｓ01E01"].error
    assert results["S01E02"].status == "failed" and "without a single fingerprint" in results["S01E02"].error
    assert results["S01E03"].status == "added"
    manifest = layout.read_manifest(layout.version_dir(tmp_path / "data", "v1"))
    assert manifest["seasons"]["01"]["episodes"] == ["S01E03"]


def test_a_rerun_after_a_killed_ingest_finds_the_shared_segments_it_missed(tmp_path) -> None:
    """The kill came after the episodes were written and before their shared segments were: the
    rerun skips the unchanged files, and must still pair them."""
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.ingest import fingerprint_file, season_path
    from citywok.matcher.store.shard import NewEpisode, Shard

    from citywok.checksum import sha256_file as file_sha256

    theme = synth.episode(50, 12.0, 8000)
    eps = tmp_path / "eps"
    eps.mkdir()
    files = []
    for n in (1, 2):
        pcm = np.concatenate([synth.episode(n, 20.0, 8000), theme, synth.episode(n + 10, 20.0, 8000)])
        f = eps / f"S01E0{n}.flac"
        f.write_bytes(synth.encode(pcm, 8000, "flac"))
        files.append(f)
    data = tmp_path / "data"
    with Shard.create(season_path(data, "v1", 1), DEFAULT_PARAMS, 1) as shard:
        for f in files:
            hashes, triplets, seconds = fingerprint_file(str(f))
            shard.add_episodes([NewEpisode(f.stem, hashes, seconds, file_sha256(f), f.stem, triplets)])
    results = ingest_paths([eps], 1, data, workers=1)
    assert [r.status for r in results] == ["skipped", "skipped"]
    with Shard.open(season_path(data, "v1", 1)) as shard:
        segments = shard.get_shared()
    assert segments and {o["episode_id"] for o in segments[0]["occurrences"]} == {"S01E01", "S01E02"}


def test_an_episode_stored_before_triplets_gets_them_from_the_next_ingest(tmp_path) -> None:
    """A season written before triplets were stored serves without them (the scale hypotheses alone):
    ingesting its unchanged files again fingerprints them again, once, and stores their triplets."""
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.ingest import fingerprint_file, season_path
    from citywok.matcher.store.shard import NewEpisode, Shard

    from citywok.checksum import sha256_file as file_sha256

    eps = tmp_path / "eps"
    eps.mkdir()
    f = eps / "S01E01.flac"
    f.write_bytes(synth.encode(synth.episode(3, 30.0, 8000), 8000, "flac"))
    data = tmp_path / "data"
    with Shard.create(season_path(data, "v1", 1), DEFAULT_PARAMS, 1) as shard:
        hashes, _, seconds = fingerprint_file(str(f))
        shard.add_episodes([NewEpisode("S01E01", hashes, seconds, file_sha256(f), "S01E01")])  # no triplets
        assert shard.meta()["triplet_count"] == 0 and shard.episode("S01E01").triplets is None
    assert [r.status for r in ingest_paths([eps], 1, data, workers=1)] == ["replaced"]
    with Shard.open(season_path(data, "v1", 1)) as shard:
        stored = shard.episode("S01E01")
        assert stored.triplets and shard.meta()["triplet_count"] == stored.triplets and shard.check()["ok"]
    assert [r.status for r in ingest_paths([eps], 1, data, workers=1)] == ["skipped"]


def test_an_upload_of_an_episode_stored_before_triplets_stores_them(tmp_path) -> None:
    import hashlib

    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.ingest import ingest_bytes
    from citywok.matcher.store.shard import Shard

    pcm = synth.episode(4, 30.0, 8000)
    data = synth.encode(pcm, 8000, "flac")
    with Shard.create(tmp_path / "season_01.lmdb", DEFAULT_PARAMS, 1) as shard:
        shard.add_episode("S01E01", fingerprint_pcm(pcm), 30.0, hashlib.sha256(data).hexdigest())  # no triplets
        assert ingest_bytes(shard, "S01E01", data).status == "replaced"
        assert shard.episode("S01E01").triplets and shard.meta()["triplet_count"] > 0
        assert ingest_bytes(shard, "S01E01", data).status == "skipped"


def test_episodes_take_slots_in_the_order_of_the_files_whichever_finishes_first(tmp_path) -> None:
    eps = tmp_path / "eps"
    eps.mkdir()
    # the first file takes several times as long to fingerprint as the next ones
    for name, seed, seconds in (("S01E01", 1, 240.0), ("S01E02", 2, 5.0), ("S01E03", 3, 5.0)):
        (eps / f"{name}.flac").write_bytes(synth.encode(synth.episode(seed, seconds, 8000), 8000, "flac"))
    results = ingest_paths([eps], 1, tmp_path / "data", workers=2)
    assert [r.episode_id for r in results] == ["S01E01", "S01E02", "S01E03"]
    with Shard.open(season_path(tmp_path / "data", "v1", 1)) as shard:
        assert sorted((e.slot, e.id) for e in shard.episodes()) == [(0, "S01E01"), (1, "S01E02"), (2, "S01E03")]


def test_files_are_fingerprinted_a_bounded_number_ahead_of_the_one_written_next(tmp_path) -> None:
    paths = []
    for n in range(6):
        p = tmp_path / f"S01E0{n + 1}.flac"
        p.write_bytes(synth.encode(synth.episode(n, 5.0, 8000), 8000, "flac"))
        paths.append(str(p))

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.submitted += 1
            return super().submit(*args, **kwargs)

    with Counting(max_workers=2) as pool:
        taken = []
        for path, (prints, seconds, err) in _in_order(pool, paths, DEFAULT_PARAMS, ahead=2):
            taken.append(path)
            assert err is None and prints is not None and seconds == 5.0
            assert pool.submitted <= len(taken) + 1  # the one taken and at most one more waiting
    assert taken == paths and pool.submitted == len(paths)
