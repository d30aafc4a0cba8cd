"""Several processes writing one season: an acknowledged HTTP ingest survives a CLI ingest beside it.

`citywok ingest` compacts a season by renaming a repacked file over ``data.mdb``; a server with the
season open would keep writing into the replaced file. Compaction now waits for no one: it runs only
when no other process holds the season, so the server's writes land in the file everyone reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import requests
from citywok.matcher import synth

from tests.http.procserver import ServeProcess
from tests.http.support import RATE, SEASON1, build_version, clip_bytes, episode_pcm

TOKEN = "race-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _episode_file(folder: Path, seed: int, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(synth.encode(episode_pcm(seed), RATE, "flac"))
    return p


def _cli_ingest(data: Path, *paths: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("citywok")
    return subprocess.run([str(exe), "ingest", *map(str, paths), "--season", "1"],
                          env={**os.environ, "DATA_DIR": str(data)}, capture_output=True, text=True, timeout=300)


def _http_ingest(url: str, seed: int, eid: str) -> requests.Response:
    return requests.post(f"{url}/api/v1/ingest", data={"episode_id": eid, "season": "1"},
                         files={"file": ("e.flac", synth.encode(episode_pcm(seed), RATE, "flac"))}, headers=AUTH,
                         timeout=120)


def _identify(url: str, seed: int) -> str | None:
    r = requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(seed, 11.0))}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json().get("episode_id")


def test_http_ingest_after_a_cli_ingest_on_the_same_data_dir_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build_version(data, "v1", SEASON1)
    files = tmp_path / "episodes"
    s = ServeProcess(data, INGEST_TOKEN=TOKEN).start()
    try:
        r = _cli_ingest(data, _episode_file(files, 6, "Show S01E06.flac"))
        assert r.returncode == 0, r.stderr
        got = _http_ingest(s.url, 7, "S01E07")
        assert got.status_code == 201, got.text
        assert _identify(s.url, 7) == "S01E07"
    finally:
        s.stop()
    with ServeProcess(data) as again:
        assert [_identify(again.url, seed) for seed in (6, 7, 1)] == ["S01E06", "S01E07", "S01E01"]


def test_cli_ingest_compacts_when_no_one_else_holds_the_season(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build_version(data, "v1", SEASON1)
    files = tmp_path / "episodes"
    shard = data / "fingerprints" / "v1" / "season_01.lmdb" / "data.mdb"
    before = shard.stat().st_ino
    r = _cli_ingest(data, _episode_file(files, 6, "S01E06.flac"))
    assert r.returncode == 0, r.stderr
    assert shard.stat().st_ino != before  # repacked and renamed into place
    shutil.rmtree(files)
