"""Request bodies: the admission slot is taken before one is read, a slow one times out (408), a
client that disconnects mid-body is its own error (499 in the log, no traceback)."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from tests.http.procserver import ServeProcess
from tests.http.support import SEASON1, build_version, clip_bytes
from tests.support import metric_value, wait_for

HEAD = ("POST /api/v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=bb\r\n"
        "Content-Length: {n}\r\n\r\n")
PART = b'--bb\r\nContent-Disposition: form-data; name="file"; filename="c.mp3"\r\n\r\n'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("body") / "data"
    build_version(d, "v1", SEASON1)
    with ServeProcess(d, WORKERS="1", MAX_QUEUE="0", BODY_TIMEOUT="2") as s:
        yield s


def _start_upload(port: int, total: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(HEAD.format(n=total).encode() + PART + b"\0" * 1000)
    return s


def _wait_admitted(server: ServeProcess, jobs: int) -> None:
    """Until the server counts ``jobs`` identify jobs admitted (the slot is taken before the body is read)."""
    wait_for(lambda: metric_value(requests.get(f"{server.url}/metrics", timeout=5).text,
                                  "citywok_identify_queue_depth") == jobs, 10, f"{jobs} jobs admitted")


def _status(s: socket.socket) -> int:
    return int(s.recv(4096).split(b"\r\n", 1)[0].split()[1])


def _log_lines(server: ServeProcess) -> list[dict]:
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_an_upload_still_arriving_holds_its_slot(server: ServeProcess) -> None:
    slow = _start_upload(server.port, 5_000_000)
    try:
        _wait_admitted(server, 1)
        r = requests.post(f"{server.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 10.0))}, timeout=10)
        assert r.status_code == 429, r.text  # the one slot is the slow upload's, taken before its body
    finally:
        slow.close()
    _wait_admitted(server, 0)
    r = requests.post(f"{server.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 10.0))}, timeout=10)
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E01"


def test_a_body_that_stops_arriving_is_408(server: ServeProcess) -> None:
    s = _start_upload(server.port, 100_000)
    try:
        t0 = time.monotonic()
        assert _status(s) == 408 and time.monotonic() - t0 < 5
    finally:
        s.close()


def test_a_client_gone_mid_body_is_logged_as_its_error(server: ServeProcess) -> None:
    s = _start_upload(server.port, 5_000_000)
    _wait_admitted(server, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST, as a dropped client
    s.close()
    wait_for(lambda: any(x.get("status") == 499 for x in _log_lines(server)), 5, "the 499 in the log",
             detail=lambda: server.log()[-2000:])
    assert any(x.get("status") == 499 for x in _log_lines(server)), server.log()[-2000:]
    assert "Traceback" not in server.log() and not any(x.get("status") == 500 for x in _log_lines(server))
