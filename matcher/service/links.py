"""Links people paste (a video page, a direct media URL, an HLS playlist): bounded downloads, cached answers.

Downloads run in threads of their own, at most ``MAX_DOWNLOADS`` at once (past that: 429), each under a
deadline (``URL_TIMEOUT``) and a byte limit, so a slow site holds a download thread, never an identify
worker. yt-dlp is imported once, in a thread started with the server (its import and the first look at
its extractors take seconds); a link that arrives before that is done waits for it.

Answers are remembered by the normalised link and the fingerprint version that answered: a link pasted
a thousand times is downloaded once, and the same link pasted while its first download runs waits for
that download instead of starting another.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from citywok.matcher.service import urlfetch
from citywok.matcher.service.admission import Admission, Overloaded
from citywok.matcher.service.urlfetch import LinkError

if TYPE_CHECKING:
    from citywok.matcher.service.linkdl import Downloaded, Downloader
    from citywok.matcher.service.linkguard import Budget

TRACKING = ("utm_", "fbclid", "gclid", "igsh", "igshid", "si", "feature", "ref_src", "ref_url", "share_id",
            "_r", "_t", "is_from_webapp", "sender_device", "sender_web_id")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise(url: str) -> str:
    """The link as a cache key: scheme and host in lower case, no default port, no tracking parameters,
    the rest of the query sorted, the fragment kept only for a start time (``#t=90``)."""
    p = urlsplit(url.strip())
    scheme, host = p.scheme.lower(), (p.hostname or "").lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if p.port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{p.port}"
    query = sorted((k, v) for k, v in parse_qsl(p.query, keep_blank_values=True)
                   if not any(k == t or (t.endswith("_") and k.startswith(t)) for t in TRACKING))
    frag = urlencode(sorted((k, v) for k, v in parse_qsl(p.fragment) if k in ("t", "start")))
    return urlunsplit((scheme, netloc, p.path or "/", urlencode(query), frag))


class AnswerCache:
    """The last ``size`` answers, each for ``ttl`` seconds (a deleted video should not answer forever)."""

    def __init__(self, size: int = 256, ttl: float = 600.0) -> None:
        self.size, self.ttl = size, ttl
        self._items: OrderedDict[tuple[str, str], tuple[float, dict]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, str]) -> dict | None:
        got = self._items.get(key)
        if got is None or time.monotonic() - got[0] > self.ttl:
            self._items.pop(key, None)
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return got[1]

    def put(self, key: tuple[str, str], body: dict) -> None:
        if self.size <= 0:
            return
        self._items[key] = (time.monotonic(), body)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


Compute = Callable[["Downloaded"], Awaitable[dict]]


class Links:
    """The server's link path: yt-dlp in download threads, a slot per download, answers cached."""

    def __init__(self, allow: urlfetch.AllowList, timeout: float, max_bytes: int, max_seconds: float,
                 downloads: Admission, cache_size: int = 256, cache_ttl: float = 600.0) -> None:
        self.allow, self.timeout, self.max_bytes, self.max_seconds = allow, timeout, max_bytes, max_seconds
        self.downloads = downloads
        self.cache = AnswerCache(cache_size, cache_ttl)
        self.executor = ThreadPoolExecutor(max(1, downloads.workers), thread_name_prefix="link")
        self._local = threading.local()
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}
        self.ready: Future = Future()
        self.downloads_started = 0

    def start(self) -> Future:
        """Import yt-dlp and look at its extractors once, in a thread of its own (not in a request)."""
        threading.Thread(target=self._warm, name="link-warm", daemon=True).start()
        return self.ready

    def _warm(self) -> None:
        try:
            from citywok.matcher.service import linkdl

            linkdl.warm()
            self.ready.set_result(linkdl)
        except BaseException as e:  # noqa: BLE001 - a link request reports it
            self.ready.set_exception(e)

    def _downloader(self) -> Downloader:
        d = getattr(self._local, "downloader", None)
        if d is None:
            linkdl = self.ready.result()
            d = self._local.downloader = linkdl.Downloader(self.allow, self.timeout, self.max_bytes,
                                                           self.max_seconds)
        return d

    async def answer(self, url: str, version: str, compute: Compute) -> dict[str, Any]:
        """The answer for a link: from the cache, from a download of it already running, or fresh."""
        urlfetch.check_url(url, self.allow)  # scheme, host and IP literals refused before any thread runs
        key = (normalise(url), version)
        hit = self.cache.get(key)
        if hit is not None:
            return {**hit, "cached": True}
        running = self._inflight.get(key)
        if running is not None:
            return {**await asyncio.shield(running), "cached": True}
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            body = await self._fresh(url, compute)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: waiters re-raise it, nobody else need
            raise
        finally:
            self._inflight.pop(key, None)
        fut.set_result(body)
        self.cache.put(key, body)
        return {**body, "cached": False}

    async def _fresh(self, url: str, compute: Compute) -> dict[str, Any]:
        t0 = time.perf_counter()
        got = await self.download(url)
        t1 = time.perf_counter()
        body = await compute(got)
        body["source"] = got.source.to_json()
        body["download_ms"] = round((t1 - t0) * 1000, 1)
        return body

    async def download(self, url: str) -> Downloaded:
        """The link's audio, in a download thread; the slot is held until that thread is done."""
        if self.downloads.full:
            raise Overloaded()
        linkdl = await asyncio.wrap_future(self.ready)
        budget = linkdl.Budget(self.max_bytes, self.timeout)
        loop = asyncio.get_running_loop()
        self.downloads.admitted += 1
        self.downloads_started += 1
        fut = loop.run_in_executor(self.executor, self._run, url, budget)
        fut.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.timeout)
        except TimeoutError:
            budget.cancel()
            raise LinkError(504, "url_timeout", f"the site did not deliver the audio within {self.timeout:g} s"
                            ) from None

    def _release(self, fut: asyncio.Future) -> None:
        """The download thread is done (maybe after its request was answered 504): its slot is free."""
        self.downloads.admitted -= 1
        if not fut.cancelled():
            fut.exception()  # seen here, if the request stopped waiting for it

    def _run(self, url: str, budget: Budget) -> Downloaded:
        return self._downloader().download(url, budget)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
