"""Helpers of the HTTP tests: generated episodes and versions, and servers on loopback ports."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from aiohttp import web
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.service.server import ServerConfig, create_app
from citywok.matcher.store.ingest import write_manifest

from citywok import layout
from tests.support import free_port

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
                  flip: bool = True, titles: dict[int, str] | None = None) -> Path:
    """A complete version folder holding the given generated episodes, optionally made `current`."""
    from citywok.matcher.store.shard import Shard

    vdir = layout.version_dir(data_dir, version)
    with Shard.create(vdir / layout.season_name(season), DEFAULT_PARAMS, season) as shard:
        for seed, eid in episodes.items():
            pcm = episode_pcm(seed)
            shard.add_episode(eid, fingerprint_pcm(pcm), pcm.size / RATE, f"sha-{seed}", (titles or {}).get(seed, eid))
    write_manifest(data_dir, version)
    if flip:
        layout.flip_current(data_dir, version)
    return vdir


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
    def service(self):  # noqa: ANN201 - citywok.matcher.service.server.Service
        from citywok.matcher.service.routes import SERVICE

        return self.app[SERVICE]


class Origin(LoopbackServer):
    """A small loopback web server that serves clips, redirects, huge and slow bodies."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.hits: list[str] = []
        super().__init__(self._make_app(), bind)

    def _make_app(self) -> web.Application:
        clip = clip_bytes(2, 9.0)

        async def handle(request: web.Request) -> web.StreamResponse:
            self.hits.append(request.path)
            name = request.match_info["name"]
            if name == "clip.mp3":
                return web.Response(body=clip, content_type="audio/mpeg")
            if name == "redirect":
                raise web.HTTPFound(request.query["to"])
            if name == "huge":
                resp = web.StreamResponse()  # no Content-Length: the cap must hold while streaming
                await resp.prepare(request)
                for _ in range(64):
                    await resp.write(b"\0" * 65536)
                return resp
            if name == "slow":
                await asyncio.sleep(5)
                return web.Response(body=clip)
            if name == "missing":
                raise web.HTTPNotFound()
            if name == "loop":
                raise web.HTTPFound(f"/loop?{len(self.hits)}")
            return web.Response(text="not audio")

        app = web.Application()
        app.router.add_get("/{name}", handle)
        return app
