"""USE_LMDB=false: the server answers from the legacy season pickles, the same as from LMDB."""

from __future__ import annotations

from pathlib import Path

import requests
from citywok.matcher import synth
from citywok.matcher.legacy.ingest import ingest_pickle

from tests.http.support import RATE, SEASON1, clip_bytes, episode_pcm


def _pickle_data(tmp_path: Path) -> Path:
    src = tmp_path / "episodes"
    src.mkdir()
    for seed, eid in SEASON1.items():
        (src / f"Show.{eid}.wav").write_bytes(synth.encode(episode_pcm(seed), RATE, "wav"))
    data = tmp_path / "data"
    results = ingest_pickle([src], 1, data, workers=1)
    assert {r.status for r in results} == {"added"}
    assert (data / "season_01.pkl").is_file()
    return data


def test_pickle_mode_serves_and_refuses_ingest(start_server, tmp_path: Path) -> None:
    srv = start_server(_pickle_data(tmp_path), use_lmdb=False, ingest_token="secret")
    assert requests.get(f"{srv.url}/readyz", timeout=10).status_code == 200
    r = requests.post(f"{srv.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(3, 17.0))}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["match"] and body["episode_id"] == "S01E03" and abs(body["offset_seconds"] - 17.0) < 0.1
    r = requests.post(f"{srv.url}/api/v1/ingest", headers={"Authorization": "Bearer secret"},
                      data={"episode_id": "S01E09"}, files={"file": ("e.wav", clip_bytes(9, 0, 10, "wav"))},
                      timeout=30)
    assert r.status_code == 409 and "read-only" in r.json()["message"]


def test_pickle_mode_without_pickles_is_not_ready(start_server, tmp_path: Path) -> None:
    srv = start_server(tmp_path, use_lmdb=False)
    r = requests.get(f"{srv.url}/readyz", timeout=10)
    assert r.status_code == 503
