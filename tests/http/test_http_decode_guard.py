"""Uploads are read only by real audio/video container demuxers, with no nested protocol: an SDP,
a concat list or a playlist is a quick 415 that opens no socket and reads no other file."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from citywok.matcher.engine.decode import DecodeError, decode

from tests.http.procserver import ServeProcess
from tests.http.support import Origin


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sdp(port: int) -> bytes:
    return (f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=clip\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()


def _wav(channels: int, rate: int, frames: int = 4000) -> bytes:
    data = bytes(frames * 2 * channels)
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * 2 * channels) & 0xFFFFFFFF, 2 * channels, 16)
    head = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt
    return head + b"data" + struct.pack("<I", len(data)) + data


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    from tests.http.support import SEASON1, build_version

    d = tmp_path_factory.mktemp("guard") / "data"
    build_version(d, "v1", SEASON1)
    with ServeProcess(d, WORKERS="1") as s:
        yield s


def _upload(url: str, body: bytes, name: str) -> tuple[requests.Response, float]:
    t0 = time.monotonic()
    r = requests.post(f"{url}/api/v1/identify", files={"file": (name, body)}, timeout=60)
    return r, time.monotonic() - t0


def test_an_sdp_upload_is_415_at_once_and_binds_no_socket(served: ServeProcess) -> None:
    port = _free_udp_port()
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the server's and workers' UDP sockets, as often as they can be listed
        while not stop.is_set():
            for pid in served.pids():
                try:
                    seen.extend(c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp"))
                except psutil.Error:
                    pass

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        answers = [_upload(served.url, _sdp(port), "clip.sdp") for _ in range(3)]
    finally:
        stop.set()
        t.join(5)
    for r, took in answers:
        assert r.status_code == 415 and took < 1.0, (r.status_code, took, r.text)
        assert r.json()["error"] == "unsupported_media"
    assert port not in seen and port + 1 not in seen
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", port))  # nothing holds the port the SDP named


def test_a_concat_list_reads_no_server_file_and_says_nothing_of_paths(served: ServeProcess, tmp_path: Path) -> None:
    real = tmp_path / "exists.wav"
    real.write_bytes(_wav(1, 8000, 80000))
    msgs = set()
    for path in (real, tmp_path / "missing.wav"):
        for head in (b"ffconcat version 1.0\n", b""):
            r, took = _upload(served.url, head + f"file '{path}'\n".encode(), "list.txt")
            assert r.status_code == 415 and took < 1.0, r.text
            msgs.add(r.json()["message"])
    assert len(msgs) <= 2 and not any(str(tmp_path) in m for m in msgs)
    assert len({m for m in msgs if "concat" in m}) <= 1


def test_a_playlist_fetches_nothing() -> None:
    origin = Origin().start()
    try:
        playlist = (f"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5.0,\n{origin.url}/clip.mp3\n"
                    "#EXT-X-ENDLIST\n").encode()
        with pytest.raises(DecodeError):
            decode(playlist, 8000, max_seconds=30, time_limit=5)
        assert origin.hits == []
    finally:
        origin.stop()


@pytest.mark.parametrize("body", [_wav(255, 8000), _wav(1, 2_000_000_000, 40000), _wav(64, 1, 100)],
                         ids=["255-channels", "2GHz", "1Hz-64ch"])
def test_absurd_wav_headers_are_a_4xx(served: ServeProcess, body: bytes) -> None:
    r, _ = _upload(served.url, body, "x.wav")
    assert r.status_code in {415, 422}, (r.status_code, r.text)


def test_a_decode_past_its_time_limit_is_refused() -> None:
    from citywok.matcher import synth

    wav = synth.encode(synth.episode(3, 60.0, 8000), 8000, "wav")
    with pytest.raises(DecodeError, match="time limit"):
        decode(wav, 8000, time_limit=0.0)
