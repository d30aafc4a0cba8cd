"""`citywok serve` as a subprocess: it starts, answers, logs JSON lines, and drains on SIGTERM."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.http.support import Origin, clip_bytes
from tests.support import free_port, wait_for


def _serve(data_dir: Path, port: int, **env: str) -> subprocess.Popen:
    citywok = Path(sys.executable).with_name("citywok")
    return subprocess.Popen(
        [str(citywok), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
        env={**os.environ, "MAX_CONCURRENCY": "2", **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not become ready")


def test_serve_answers_and_drains_in_flight_requests_on_sigterm(data_dir) -> None:
    origin = Origin().start()
    port = free_port()
    proc = _serve(data_dir, port, URL_ALLOW_HOSTS="127.0.0.1", SHUTDOWN_TIMEOUT="20")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        r = requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 30.0))},
                          headers={"X-Request-Id": "cli-1"}, timeout=30)
        assert r.status_code == 200 and r.json()["episode_id"] == "S01E01"
        with cf.ThreadPoolExecutor(1) as pool:
            # the origin takes 5 s to answer: the request is in flight when SIGTERM arrives
            slow = pool.submit(requests.post, f"{url}/api/v1/identify", json={"url": f"{origin.url}/slow"},
                               timeout=30)
            wait_for(lambda: "/slow" in origin.hits, 5, "the slow download to start", interval=0.05)
            proc.send_signal(signal.SIGTERM)
            r = slow.result(30)
        assert r.status_code == 200, r.text
        assert r.json()["episode_id"] == "S01E02"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        origin.stop()
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    mine = [ln for ln in lines if ln["request_id"] == "cli-1"]
    assert len(mine) == 1 and mine[0]["status"] == 200 and mine[0]["route"] == "/api/v1/identify"


def test_serve_refuses_a_bad_setting(data_dir) -> None:
    proc = _serve(data_dir, free_port(), MAX_UPLOAD_BYTES="lots")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "MAX_UPLOAD_BYTES" in err and "Traceback" not in err


def test_serve_db_version_pins_what_is_served(data_dir) -> None:
    """`citywok serve --db-version v2` (or DB_VERSION=v2) serves v2 whatever `current` says, and stays on it."""
    from citywok import layout

    for flag, env in (("--db-version", {}), (None, {"DB_VERSION": "v2"})):
        port = free_port()
        citywok = Path(sys.executable).with_name("citywok")
        cmd = [str(citywok), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        proc = subprocess.Popen([*cmd, *([flag, "v2"] if flag else [])],
                                env={**os.environ, "WORKERS": "0", "POLL_INTERVAL": "0.1", **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, proc)
            assert layout.current_version(data_dir) == "v1"
            assert requests.get(f"{url}/readyz", timeout=5).json()["db_version"] == "v2"
            layout.flip_current(data_dir, "v1")
            time.sleep(0.5)
            r = requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 30.0))}, timeout=30)
            assert r.json()["db_version"] == "v2"
        finally:
            proc.terminate()
            proc.wait(30)
