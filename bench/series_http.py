"""Identify clips through a real `citywok serve` on loopback, and tally the answers (bench.series)."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from bench.load import free_port, start_server, stop_server
from bench.series_cut import Clip

TOLERANCE = 0.25  # seconds between the answer's offset and the excerpt's start
CONTENT_TYPES = {"mp4": "video/mp4", "mp3": "audio/mpeg"}


@dataclass
class Tally:
    right: int = 0
    answered: int = 0  # any match named
    total: int = 0
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)

    def add(self, clip: Clip, episode: str | None, offset: float | None, client_ms: float,
            server_ms: float | None = None) -> None:
        self.total += 1
        self.answered += episode is not None
        self.right += (clip.episode is not None and episode == clip.episode and offset is not None
                       and abs(offset - clip.start) <= TOLERANCE)
        self.client_ms.append(client_ms)
        if server_ms is not None:
            self.server_ms.append(server_ms)


def pct(xs: list[float], q: float) -> str:
    return f"{np.percentile(xs, q):.1f}" if xs else "-"


class Client:
    """POST /api/v1/identify over one kept-alive loopback connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def identify(self, data: bytes, container: str) -> tuple[dict, float]:
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.{container}\"\r\n"
                f"Content-Type: {CONTENT_TYPES[container]}\r\n\r\n").encode()
        body = head + data + f"\r\n--{boundary}--\r\n".encode()
        t0 = time.perf_counter()
        self.conn.request("POST", "/api/v1/identify", body,
                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = self.conn.getresponse()
        answer = json.loads(resp.read())
        took = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"identify answered {resp.status}: {answer}")
        return answer, took

    def close(self) -> None:
        self.conn.close()


def memory(pid: int) -> tuple[int, int]:
    """RSS and PSS of the server and its workers (PSS counts each shared page once across them)."""
    rss = pss = 0
    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            m = p.memory_full_info()
        except psutil.Error:
            continue
        rss, pss = rss + m.rss, pss + m.pss
    return rss, pss


def serve_clips(data_dir: Path, clips: list[Clip], key: Callable[[Clip], str], rounds: int = 1, warm: int = 10
                ) -> tuple[dict[str, Tally], tuple[int, int]]:
    """Every clip (``rounds`` times) through a real `citywok serve`, one at a time; the tallies by ``key``
    and the server's (RSS, PSS) after."""
    proc, _ready, _cpu = start_server(data_dir, port := free_port())
    client = Client(port)
    try:
        for c in clips[:warm]:
            client.identify(Path(c.path).read_bytes(), c.container)
        tallies: dict[str, Tally] = {}
        for _ in range(rounds):
            for c in clips:
                answer, took = client.identify(Path(c.path).read_bytes(), c.container)
                ep = answer["episode_id"] if answer.get("match") else None
                tallies.setdefault(key(c), Tally()).add(c, ep, answer.get("offset_seconds"), took,
                                                        answer.get("elapsed_ms"))
        return tallies, memory(proc.pid)
    finally:
        client.close()
        stop_server(proc)
