"""Ingest over HTTP: the token, the write into the served version, and identify right after."""

from __future__ import annotations

import numpy as np
import requests
from citywok.matcher import synth

from citywok import layout
from tests.http.support import RATE, episode_pcm

TOKEN = "s3cret-token"


def _episode(seed: int, fmt: str = "flac") -> bytes:
    return synth.encode(episode_pcm(seed), RATE, fmt)


def _clip(seed: int, start: float) -> bytes:
    return synth.encode(episode_pcm(seed)[int(start * RATE): int((start + 5) * RATE)], RATE, "mp3")


def test_ingest_is_disabled_without_a_token(server) -> None:
    r = requests.post(f"{server.url}/api/v1/ingest", data={"episode_id": "S01E09"},
                      files={"file": ("e.flac", _episode(9))}, headers={"Authorization": "Bearer x"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"] == "ingest_disabled"
    assert "disabled" in r.json()["message"]


def test_ingest_needs_the_right_token(start_server, data_dir) -> None:
    s = start_server(data_dir, ingest_token=TOKEN)
    u = f"{s.url}/api/v1/ingest"
    files = {"file": ("e.flac", _episode(9))}
    r = requests.post(u, data={"episode_id": "S01E09"}, files=files, timeout=30)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "Bearer" in r.headers["WWW-Authenticate"]
    r = requests.post(u, data={"episode_id": "S01E09"}, files=files, headers={"Authorization": "Bearer nope"},
                      timeout=30)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", _clip(9, 10.0))}, timeout=30)
    assert r.json()["match"] is False  # nothing was written


def test_ingested_episode_is_identifiable_right_after(start_server, data_dir) -> None:
    s = start_server(data_dir, ingest_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(f"{s.url}/api/v1/ingest", data={"episode_id": "S02E01", "season": "2", "title": "Two one"},
                      files={"file": ("e.flac", _episode(21))}, headers=auth, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "added" and r.json()["season"] == 2 and r.json()["hashes"] > 100
    r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", _clip(21, 17.0))}, timeout=30)
    body = r.json()
    assert body["match"] is True and body["episode_id"] == "S02E01" and body["season"] == 2
    assert abs(body["offset_seconds"] - 17.0) < 0.1
    # into an existing season too, and the manifest names both
    r = requests.post(f"{s.url}/api/v1/ingest", data={"episode_id": "S01E04"},
                      files={"file": ("e.mp3", _episode(4, "mp3"))}, headers=auth, timeout=60)
    assert r.status_code == 201 and r.json()["season"] == 1
    assert requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", _clip(4, 30.0))},
                         timeout=30).json()["episode_id"] == "S01E04"
    manifest = layout.read_manifest(data_dir / "fingerprints" / "v1")
    assert "S02E01" in manifest["seasons"]["02"]["episodes"]
    assert "S01E04" in manifest["seasons"]["01"]["episodes"]
    test = requests.get(f"{s.url}/api/v1/test", timeout=5).json()
    assert test["seasons"] == [1, 2] and test["episodes"] == 5
    # the same upload again is skipped; the old episodes still answer
    r = requests.post(f"{s.url}/api/v1/ingest", data={"episode_id": "S01E04"},
                      files={"file": ("e.mp3", _episode(4, "mp3"))}, headers=auth, timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    assert requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", _clip(1, 2.0))},
                         timeout=30).json()["episode_id"] == "S01E01"


def test_ingest_bad_input(start_server, data_dir) -> None:
    s = start_server(data_dir, ingest_token=TOKEN)
    u = f"{s.url}/api/v1/ingest"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ep = _episode(9)

    def post(data: dict, files: dict | None = None) -> requests.Response:
        return requests.post(u, data=data, files=files, headers=auth, timeout=30)

    assert post({"episode_id": "S01E09"}, {}).json()["error"] == "bad_request"  # not multipart
    assert post({"episode_id": "S01E09", "x": "1"}, {"other": ("a", b"1")}).json()["error"] == "missing_input"
    assert post({"episode_id": "../../etc"}, {"file": ("e.flac", ep)}).json()["error"] == "bad_episode_id"
    assert post({"episode_id": "S01E09", "season": "0"}, {"file": ("e.flac", ep)}).status_code == 400
    assert post({"episode_id": "S01E09", "season": "two"}, {"file": ("e.flac", ep)}).json()["error"] == "bad_season"
    r = post({"episode_id": "S01E09"}, {"file": ("e.flac", b"not audio at all" * 64)})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media"
    r = post({"episode_id": "S01E09"}, {"file": ("e.wav", synth.encode(episode_pcm(9)[:2000], RATE, "wav"))})
    assert r.status_code == 422
    assert requests.get(f"{s.url}/api/v1/test", timeout=5).json()["episodes"] == 3  # nothing half-added


def test_audio_shared_by_ingested_episodes_is_answered_as_ambiguous(start_server, data_dir) -> None:
    s = start_server(data_dir, ingest_token=TOKEN)
    theme = synth.episode(500, 12.0, RATE)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for eid, seed in (("S03E01", 501), ("S03E02", 502)):
        pcm = np.concatenate([theme, synth.episode(seed, 25.0, RATE)])
        r = requests.post(f"{s.url}/api/v1/ingest", data={"episode_id": eid, "season": "3"},
                          files={"file": ("e.flac", synth.encode(pcm, RATE, "flac"))}, headers=auth, timeout=60)
        assert r.status_code == 201, r.text
    clip = synth.encode(theme[2 * RATE: 7 * RATE], RATE, "mp3")
    body = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip)}, timeout=30).json()
    assert body["match"] is True and body["ambiguous"] is True
    assert body["episode_id"] is None
    assert {e["episode_id"] for e in body["episodes"]} == {"S03E01", "S03E02"}
    assert all(abs(e["offset_seconds"] - 2.0) < 0.1 for e in body["episodes"])
    assert body["shared_segment"]
    # a clip of one episode's own audio still names that episode
    own = synth.encode(synth.episode(502, 25.0, RATE)[5 * RATE: 10 * RATE], RATE, "mp3")
    body = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", own)}, timeout=30).json()
    assert body["episode_id"] == "S03E02" and not body["ambiguous"]
    assert abs(body["offset_seconds"] - 17.0) < 0.1
