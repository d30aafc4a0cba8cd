"""Identify over HTTP against the real server: answers, and every error status."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import numpy as np
import pytest
import requests
from citywok.matcher import synth
from citywok.matcher.service.server import ServerConfig

from tests.http.support import RATE, ServerThread, build_version, clip_bytes
from tests.support import wait_for


def test_identify_upload_finds_episode_and_offset(server) -> None:
    r = requests.post(f"{server.url}/api/v1/identify", files={"file": ("clip.mp3", clip_bytes(2, 12.0))},
                      headers={"X-Request-Id": "test-123"}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["match"] is True
    assert body["episode_id"] == "S01E02"
    assert body["season"] == 1
    assert abs(body["offset_seconds"] - 12.0) < 0.1
    assert body["db_version"] == "v1"
    assert 0 < body["confidence"] <= 1
    assert body["elapsed_ms"] > 0
    assert body["candidates"][0]["episode_id"] == "S01E02"
    assert r.headers["X-Request-Id"] == "test-123"


def test_identify_formats_and_raw_body(server) -> None:
    for fmt in ("wav", "flac", "opus"):
        r = requests.post(f"{server.url}/api/v1/identify", files={"file": (f"c.{fmt}", clip_bytes(3, 20.0, fmt=fmt))},
                          timeout=30)
        assert r.status_code == 200 and r.json()["episode_id"] == "S01E03", (fmt, r.text)
    r = requests.post(f"{server.url}/api/v1/identify", data=clip_bytes(1, 5.0),
                      headers={"Content-Type": "audio/mpeg"}, timeout=30)
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E01"
    assert r.headers["X-Request-Id"]


def test_unindexed_audio_is_no_match(server) -> None:
    x = synth.episode(77, 6.0, RATE)
    r = requests.post(f"{server.url}/api/v1/identify", files={"file": ("c.wav", synth.encode(x, RATE, "wav"))},
                      timeout=30)
    assert r.status_code == 200
    assert r.json()["match"] is False
    assert r.json()["episode_id"] is None


def _error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    return body


def test_malformed_requests_are_400(server) -> None:
    u = f"{server.url}/api/v1/identify"
    _error(requests.post(u, timeout=10), 400, "missing_input")
    _error(requests.post(u, data={"other": "x"}, timeout=10), 400, "missing_input")
    _error(requests.post(u, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10),
           400, "bad_json")
    _error(requests.post(u, json=["a"], timeout=10), 400, "bad_json")
    _error(requests.post(u, files={"file": ("empty.mp3", b"")}, timeout=10), 400, "empty_file")
    # a multipart 'file' that is a plain field, not an upload
    _error(requests.post(u, files={"file": (None, b"just text")}, timeout=10), 400, "bad_request")
    _error(requests.post(u, json={"url": "file:///etc/passwd"}, timeout=10), 400, "bad_url")


def test_not_audio_is_415(server) -> None:
    body = _error(requests.post(f"{server.url}/api/v1/identify", files={"file": ("x.mp3", b"hello " * 500)},
                                timeout=10), 415, "unsupported_media")
    assert "audio" in body["message"]


def test_too_short_is_422(server) -> None:
    _error(requests.post(f"{server.url}/api/v1/identify", files={"file": ("c.wav", clip_bytes(1, 3.0, 0.5, "wav"))},
                         timeout=10), 422, "too_short")


def test_too_large_is_413(start_server, data_dir) -> None:
    s = start_server(data_dir, max_upload_bytes=20_000)
    clip = clip_bytes(1, 3.0, 5.0, "wav")  # 80 kB
    assert len(clip) > 20_000
    _error(requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.wav", clip)}, timeout=10), 413, "too_large")
    big = clip * 20  # past client_max_size too: refused from Content-Length
    _error(requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.wav", big)}, timeout=10), 413, "too_large")
    assert requests.get(f"{s.url}/healthz", timeout=5).status_code == 200


def test_overload_is_429_with_retry_after_at_once(start_server, data_dir) -> None:
    s = start_server(data_dir, max_concurrency=1, max_queue=1)
    clip = clip_bytes(2, 4.0, 10.0, "mp3")

    def post() -> tuple[int, float, str | None]:
        t0 = time.perf_counter()
        r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip)}, timeout=60)
        return r.status_code, time.perf_counter() - t0, r.headers.get("Retry-After")

    with cf.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: post(), range(36)))
    statuses = [st for st, _, _ in results]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    rejected = [(t, ra) for st, t, ra in results if st == 429]
    assert all(ra == "1" for _, ra in rejected)
    assert np.median([t for t, _ in rejected]) < 1.0  # refused immediately, not after a timeout
    metrics = requests.get(f"{s.url}/metrics", timeout=5).text
    assert f'citywok_identify_total{{outcome="refused"}} {len(rejected)}.0' in metrics
    assert f'citywok_identify_total{{outcome="match"}} {statuses.count(200)}.0' in metrics


def test_no_request_is_taken_before_the_link_downloader_has_loaded(data_dir, monkeypatch) -> None:
    """yt-dlp loads in a thread of the server process while the shards open; a clip answered meanwhile
    would wait for the interpreter lock, so the server listens only once both are done."""
    from citywok.matcher.service import linkdl

    gate, real = threading.Event(), linkdl.warm
    monkeypatch.setattr(linkdl, "warm", lambda: (gate.wait(30), real()))
    s = ServerThread(ServerConfig(data_dir=data_dir, host="127.0.0.1", poll_interval=0.1))
    starting = threading.Thread(target=s.start)
    starting.start()
    try:
        time.sleep(1.0)
        assert starting.is_alive()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{s.url}/healthz", timeout=5)
        gate.set()
        starting.join(30)
        assert not starting.is_alive()
        assert requests.get(f"{s.url}/readyz", timeout=5).json()["db_version"] == "v1"
        r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(2, 12.0))}, timeout=30)
        assert r.status_code == 200 and r.json()["episode_id"] == "S01E02"
    finally:
        gate.set()
        starting.join(30)
        s.stop()


def test_not_ready_is_503_until_a_version_appears(start_server, tmp_path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    s = start_server(d)
    _error(requests.get(f"{s.url}/readyz", timeout=5), 503, "not_ready")
    _error(requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 1.0))}, timeout=10),
           503, "not_ready")
    assert 'citywok_identify_total{outcome="refused"} 1.0' in requests.get(f"{s.url}/metrics", timeout=5).text
    assert requests.get(f"{s.url}/healthz", timeout=5).json() == {"status": "ok"}
    t = requests.get(f"{s.url}/api/v1/test", timeout=5).json()
    assert t["status"] == "ok" and t["db_version"] is None
    # an incomplete version (no manifest) is never served
    vdir = build_version(d, "v1", {1: "S01E01"}, flip=False)
    (vdir / "manifest.json").rename(vdir / "manifest.json.hold")
    (d / "fingerprints" / "current").symlink_to("v1")
    time.sleep(0.6)
    assert requests.get(f"{s.url}/readyz", timeout=5).status_code == 503
    (vdir / "manifest.json.hold").rename(vdir / "manifest.json")
    wait_for(lambda: requests.get(f"{s.url}/readyz", timeout=5).status_code == 200, 5,
             "the new version to be picked up")
    r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 20.0))}, timeout=30)
    assert r.json()["episode_id"] == "S01E01"


def test_unknown_route_and_method_are_json(server) -> None:
    _error(requests.get(f"{server.url}/nope", timeout=5), 404, "not_found")
    body = _error(requests.get(f"{server.url}/api/v1/identify", timeout=5), 405, "method_not_allowed")
    assert body["message"]


def test_chunked_raw_body(server) -> None:
    clip = clip_bytes(2, 30.0)
    r = requests.post(f"{server.url}/api/v1/identify", data=iter([clip[:1000], clip[1000:]]),
                      headers={"Content-Type": "audio/mpeg"}, timeout=30)
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E02"
