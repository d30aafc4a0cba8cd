"""A loopback "video site" that yt-dlp's generic extractor reads, and a listener that must never be reached.

Pages carry their media the ways real sites do: ``og:video`` and a ``<video>`` tag, JSON-LD with a duration
and an author, an HLS playlist of MPEG-TS segments. Every request is counted by path.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
from collections import Counter

import av
import numpy as np
from aiohttp import web

from tests.http.support import RATE, LoopbackServer, episode_pcm

SEGMENT_SECONDS = 2.0


def scene(seed: int, start: float, seconds: float) -> np.ndarray:
    return episode_pcm(seed)[int(start * RATE): int((start + seconds) * RATE)]


def ts_segments(pcm: np.ndarray, seconds: float = SEGMENT_SECONDS) -> list[bytes]:
    """AAC in MPEG-TS, cut into HLS segments at packet boundaries, by FFmpeg's own muxer (PyAV)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as c:
        s = c.add_stream("aac", rate=RATE)
        s.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.clip(pcm, -1, 1).astype(np.float32)[None, :], format="flt",
                                           layout="mono")
        frame.sample_rate = RATE
        for pkt in [*s.encode(frame), *s.encode(None)]:
            c.mux(pkt)
    data = buf.getvalue()
    n = max(1, int(np.ceil(pcm.size / RATE / seconds)))
    step = -(-len(data) // n // 188) * 188
    return [data[i: i + step] for i in range(0, len(data), step)]


def playlist(base: str, count: int, seconds: float = SEGMENT_SECONDS) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(np.ceil(seconds))}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(count):
        lines += [f"#EXTINF:{seconds:.3f},", f"{base}/{i}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def og_page(title: str, media: str) -> str:
    return (f'<!doctype html><html><head><title>{title}</title><meta property="og:title" content="{title}">'
            f'<meta property="og:video" content="{media}"></head><body><h1>{title}</h1>'
            f'<video controls src="{media}"></video></body></html>')


def jsonld_page(title: str, media: str, duration: str, author: str) -> str:
    ld = {"@context": "https://schema.org", "@type": "VideoObject", "name": title, "contentUrl": media,
          "duration": duration, "uploadDate": "2026-01-01", "author": {"@type": "Person", "name": author},
          "thumbnailUrl": "/t.jpg", "description": title}
    return (f'<!doctype html><html><head><title>{title}</title><script type="application/ld+json">'
            f'{json.dumps(ld)}</script></head><body></body></html>')


class Listener:
    """A TCP port that only counts the connections made to it (none should ever be)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.sock = socket.create_server((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.connections = 0
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


class VideoSite(LoopbackServer):
    """Pages, media, playlists and the awkward cases, on 127.0.0.1; ``hits`` counts requests by path."""

    def __init__(self, private_url: str, media: dict[str, np.ndarray]) -> None:
        self.hits: Counter[str] = Counter()
        self.private_url = private_url
        self.media = {k: _mp3(v) for k, v in media.items()}
        self.segments = {k: ts_segments(v) for k, v in media.items()}
        super().__init__(self._app())

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        r = app.router
        private = self.private_url
        pages = {
            "/watch/{name}": lambda q: _html(og_page(f"Scene {q.match_info['name']}",
                                                     f"/media/{q.match_info['name']}.mp3")),
            "/show/{name}": lambda q: _html(og_page("Via HLS", f"/hls/{q.match_info['name']}.m3u8")),
            "/long": lambda q: _html(jsonld_page("Whole episode", f"http://{q.host}/media/clip.mp3", "PT12M",
                                                 "Uploader X")),
            "/ld/{name}": lambda q: _html(jsonld_page("Best moments", f"http://{q.host}/media/"
                                                      f"{q.match_info['name']}.mp3", "PT1M", "Uploader X")),
            "/evil": lambda q: _html(og_page("Evil", f"{private}/x.mp3")),
            "/evil-hls.m3u8": lambda q: web.Response(text=playlist(private, 2),
                                                     content_type="application/vnd.apple.mpegurl"),
            "/hop": lambda q: web.HTTPFound(f"{private}/x.mp3"),
            "/empty": lambda q: _html("<!doctype html><html><head><title>Nothing</title></head>"
                                      "<body><p>no video here</p></body></html>"),
            "/status/{code}": lambda q: web.Response(status=int(q.match_info["code"]), text="no"),
        }
        for path, make in pages.items():
            r.add_get(path, _page(make))
        r.add_get("/media/{name}.mp3", self._mp3)
        r.add_get("/hls/{name}.m3u8", self._playlist)
        r.add_get("/hls/{name}/{i}.ts", self._segment)
        r.add_get("/r/{n}", self._redirect)
        r.add_get("/slow", self._slow)
        r.add_get("/trickle.mp3", self._trickle)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler):  # noqa: ANN001, ANN202
        self.hits[request.path] += 1
        return await handler(request)

    async def _mp3(self, request: web.Request) -> web.Response:
        return web.Response(body=self.media[request.match_info["name"]], content_type="audio/mpeg")

    async def _playlist(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(text=playlist(name, len(self.segments[name])),
                            content_type="application/vnd.apple.mpegurl")

    async def _segment(self, request: web.Request) -> web.Response:
        segs = self.segments[request.match_info["name"]]
        return web.Response(body=segs[int(request.match_info["i"])], content_type="video/mp2t")

    async def _redirect(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/r/{n - 1}" if n > 1 else "/watch/clip")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return _html(og_page("Slow", "/media/clip.mp3"))

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        body = self.media["clip"]
        for i in range(0, len(body), 64):
            await resp.write(body[i: i + 64])
            await asyncio.sleep(0.2)
        return resp


def _page(make):  # noqa: ANN001, ANN202
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = make(request)
        if isinstance(resp, web.HTTPException) and resp.status >= 300:
            raise resp
        return resp

    return handle


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _mp3(pcm: np.ndarray) -> bytes:
    from citywok.matcher import synth

    return synth.encode(pcm, RATE, "mp3")
