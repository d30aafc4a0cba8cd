"""Fixtures for the HTTP tests: generated fingerprint versions and the real server on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from citywok import layout
from matcher import synth
from matcher.fingerprint import fingerprint_pcm
from matcher.ingest import write_manifest
from matcher.params import DEFAULT_PARAMS
from matcher.server import ServerConfig, create_app

RATE = DEFAULT_PARAMS.sample_rate
EPISODE_SECONDS = 40.0
SEASON1 = {1: "S01E01", 2: "S01E02", 3: "S01E03"}  # synth seed -> episode id


def episode_pcm(seed: int, seconds: float = EPISODE_SECONDS) -> np.ndarray:
    return synth.episode(seed, seconds, RATE)


def clip_bytes(seed: int, start: float, seconds: float = 5.0, fmt: str = "mp3") -> bytes:
    """A clip of a generated episode, re-encoded as a user's upload would be."""
    x = episode_pcm(seed)[int(start * RATE): int((start + seconds) * RATE)]
    return synth.encode(x, RATE, fmt)


def build_version(data_dir: Path, version: str, episodes: dict[int, str], season: int = 1,
                  flip: bool = True) -> Path:
    """A complete version folder holding the given generated episodes, optionally made `current`."""
    from matcher.shard import Shard

    vdir = layout.version_dir(data_dir, version)
    with Shard.create(vdir / layout.season_name(season), DEFAULT_PARAMS, season) as shard:
        for seed, eid in episodes.items():
            pcm = episode_pcm(seed)
            shard.add_episode(eid, fingerprint_pcm(pcm), pcm.size / RATE, f"sha-{seed}", eid)
    write_manifest(data_dir, version)
    if flip:
        layout.flip_current(data_dir, version)
    return vdir


@pytest.fixture(scope="session")
def built_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with v1 and v2 (same season-1 episodes), `current` -> v1. Copy it before writing."""
    d = tmp_path_factory.mktemp("versions")
    build_version(d, "v1", SEASON1)
    shutil.copytree(d / "fingerprints" / "v1", d / "fingerprints" / "v2")
    layout.write_manifest(d / "fingerprints" / "v2", {**layout.read_manifest(d / "fingerprints" / "v2"),
                                                       "version": "v2"})
    return d


@pytest.fixture
def data_dir(built_versions: Path, tmp_path: Path) -> Path:
    """A private copy of the built versions (the server may write into it)."""
    d = tmp_path / "data"
    shutil.copytree(built_versions, d, symlinks=True)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """An aiohttp app on a loopback port, in a thread with its own event loop."""

    def __init__(self, app: web.Application, bind: str = "127.0.0.1") -> None:
        self.app = app
        self.bind = bind
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
        self.port = free_port()
        self.url = f"http://{bind}:{self.port}"
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> LoopbackServer:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, self.bind, self.port).start()

    def call(self, coro, timeout: float = 30):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ServerThread(LoopbackServer):
    """The real matcher app."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        super().__init__(create_app(config))

    @property
    def service(self):  # noqa: ANN201 - matcher.server.Service
        from matcher.routes import SERVICE

        return self.app[SERVICE]


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Start servers with ServerConfig fields as keywords; all are stopped after the test."""
    started: list[ServerThread] = []

    def start(data_dir: Path, **kw: object) -> ServerThread:
        kw.setdefault("poll_interval", 0.1)
        s = ServerThread(ServerConfig(data_dir=Path(data_dir), host="127.0.0.1", **kw)).start()
        started.append(s)
        return s

    yield start
    for s in started:
        with contextlib.suppress(Exception):
            s.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerThread], data_dir: Path) -> ServerThread:
    return start_server(data_dir)
