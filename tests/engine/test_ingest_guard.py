"""What ingest refuses: look-alike episode ids, non-ASCII season numbers, audio with no fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
from citywok.matcher import synth
from citywok.matcher.store.ingest import ingest_paths

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
