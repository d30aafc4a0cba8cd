import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from citywok.matcher import synth
from citywok.matcher.store.ingest import episode_id_for

from citywok import layout

from .conftest import write_episode_files


def citywok(*args: str, env_data: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citywok", *args, "--data-dir", str(env_data)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name,eid", [("Show.S01E02.mkv", "S01E02"), ("show s3e14 final.mp3", "S03E14"),
                                      ("Pilot.flac", "Pilot"), ("s01_e05.ogg", "S01E05")])
def test_episode_id_from_name(name, eid):
    assert episode_id_for(Path(name)) == eid


def test_ingest_identify_skip_replace_remove(tmp_path):
    data = tmp_path / "data"
    files = write_episode_files(tmp_path / "eps", [1, 2, 3])
    r = citywok("ingest", str(tmp_path / "eps"), "--season", "2", "--no-progress", env_data=data)
    assert r.returncode == 0, r.stderr
    assert "3 added" in r.stdout
    assert layout.current_version(data) == "v1"
    manifest = layout.read_manifest(layout.version_dir(data, "v1"))
    assert manifest["seasons"]["02"]["episodes"] == ["S02E01", "S02E02", "S02E03"]

    clip = tmp_path / "clip.mp3"
    x = synth.episode(102, 30, 22050)[int(11.5 * 22050) : int(16.5 * 22050)]
    clip.write_bytes(synth.encode(x, 22050, "mp3", 64000))
    r = citywok("identify", str(clip), "--json", env_data=data)
    assert r.returncode == 0, r.stderr
    ans = json.loads(r.stdout)
    assert ans["match"] and ans["episode_id"] == "S02E02" and ans["season"] == 2
    assert 12 <= ans["spread"] <= ans["score"]  # the threshold's measure, reported
    assert abs(ans["offset_seconds"] - 11.5) <= 0.1

    r = citywok("ingest", str(tmp_path / "eps"), "--season", "2", "--no-progress", env_data=data)
    assert "0 added, 0 replaced, 3 skipped" in r.stdout
    files[0].write_bytes(synth.encode(synth.episode(555, 30, 22050), 22050, "flac"))
    r = citywok("ingest", str(files[0]), "--season", "2", "--no-progress", env_data=data)
    assert "1 replaced" in r.stdout

    r = citywok("ingest", "--season", "2", "--remove", "S02E02", env_data=data)
    assert "S02E02: removed" in r.stdout
    r = citywok("identify", str(clip), env_data=data)
    assert r.returncode == 3 and "no match" in r.stdout and "a longer clip" in r.stdout


def test_bad_input_is_a_clear_error(tmp_path):
    data = tmp_path / "data"
    r = citywok("identify", str(tmp_path / "x.mp3"), env_data=data)
    assert r.returncode != 0 and "citywok ingest" in r.stderr
    write_episode_files(tmp_path / "eps", [1], seconds=10)
    junk = tmp_path / "eps" / "S02E09.mp3"
    junk.write_bytes(b"this is not audio at all" * 100)
    r = citywok("ingest", str(tmp_path / "eps"), "--season", "2", "--no-progress", env_data=data)
    assert r.returncode == 1 and "1 added" in r.stdout and "1 failed" in r.stdout
    assert "FAILED" in r.stderr and "S02E09.mp3" in r.stderr
    r = citywok("identify", str(junk), env_data=data)
    assert r.returncode == 2 and "not" in r.stderr and "Traceback" not in r.stderr
    r = citywok("ingest", str(tmp_path / "missing"), "--season", "2", env_data=data)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_seasons_setting_limits_what_is_searched(tmp_path):
    """SEASONS (what the operator sets from a FingerprintDB's spec.seasons) narrows the search."""
    data = tmp_path / "data"
    write_episode_files(tmp_path / "eps", [1], seconds=20)
    for season in (2, 3):
        r = citywok("ingest", str(tmp_path / "eps"), "--season", str(season), "--no-progress", env_data=data)
        assert r.returncode == 0, r.stderr
    clip = tmp_path / "clip.wav"
    clip.write_bytes(synth.encode(synth.episode(101, 20, 22050)[5 * 22050 : 10 * 22050], 22050, "wav"))
    ans = json.loads(citywok("identify", str(clip), "--json", env_data=data, env={"SEASONS": "3"}).stdout)
    assert ans["match"] and ans["season"] == 3  # the same episode is in both; only season 3 is searched
    ans = json.loads(citywok("identify", str(clip), "--json", env_data=data, env={"SEASONS": "2"}).stdout)
    assert ans["match"] and ans["season"] == 2
    r = citywok("identify", str(clip), env_data=data, env={"SEASONS": "4"})
    assert r.returncode == 3 and "no match" in r.stdout


def test_identify_prints_the_edit_of_a_sped_up_clip(tmp_path):
    data = tmp_path / "data"
    write_episode_files(tmp_path / "eps", [4])
    r = citywok("ingest", str(tmp_path / "eps"), "--season", "2", "--no-progress", env_data=data)
    assert r.returncode == 0, r.stderr
    x = synth.episode(104, 30, 22050)[int(6.0 * 22050): int((6.0 + 6 * 1.25) * 22050)]
    clip = tmp_path / "fast.mp3"
    clip.write_bytes(synth.encode(synth.rescale(x, 22050, speed=1.25), 22050, "mp3", 64000))
    r = citywok("identify", str(clip), env_data=data)
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("S02E04") and "season 2, at 0:0" in first and "sped up 1.2" in first
    ans = json.loads(citywok("identify", str(clip), "--json", env_data=data).stdout)
    assert abs(ans["offset_seconds"] - 6.0) <= 0.1
    assert abs(ans["time_scale"] - 1.25) <= 0.025 and abs(ans["pitch_scale"] - 1.25) <= 0.025
    assert ans["speed"] == ans["time_scale"] and ans["edit"].startswith("sped up 1.2")
