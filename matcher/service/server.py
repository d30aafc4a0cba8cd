"""`citywok serve`: the matcher HTTP service (aiohttp). App factory, middleware, the swap watcher, main.

Settings, flags first, then the environment, then the default:

    HOST, --host        0.0.0.0
    PORT, --port        8000
    DATA_DIR            ./data; serves DATA_DIR/fingerprints/current, swapped when it moves
    DB_VERSION, --db-version   unset: follow `current`; set: serve this version only (a pin)
    MAX_SEASONS         all
    SEASONS             all (a list, e.g. 1,3,5: serve only these)
    USE_LMDB            true; false serves the legacy DATA_DIR/season_NN.pkl files (read-only, no swaps)
    INGEST_TOKEN        unset: POST /api/v1/ingest answers 404 "ingest is disabled"
    URL_ALLOW_HOSTS     comma-separated hosts or networks, each optionally with a port (127.0.0.1:8080), that a
                        URL or link may reach although private/loopback (tests); default none
    MAX_UPLOAD_BYTES    52428800 (uploads and URL downloads)
    WORKERS             identify worker processes (one clip at a time each); default: the CPUs this process may use
                        (its affinity, capped by a container's CPU limit);
                        0 runs identify in threads of the server process (always so with USE_LMDB=false)
    MAX_CONCURRENCY     with WORKERS=0: identify threads; default: the same CPU count
    MAX_QUEUE           identify jobs waiting beyond those running; default 2 x running; past it: 429
    MAX_QUEUE_WAIT      seconds a new job may be expected to wait (recent job times); 0.5; past it: 429
    MAX_DOWNLOADS       URL downloads at once; 8; past it: 429
    POLL_INTERVAL       seconds between looks at `current`; 0.5
    BODY_TIMEOUT        seconds a client may take to send its request body; 30; past it: 408
    URL_TIMEOUT         seconds for a whole URL or link download (page, redirects, media, segments); 15
    TIMELINE_MAX_SECONDS  audio identified as a timeline, at most (longer links: 413 too_long); 600
    LINK_CACHE_SIZE     links whose answers are remembered (by link and version); 256; 0: none
    LINK_CACHE_TTL      seconds a link's answer is remembered; 600
    SHUTDOWN_TIMEOUT    seconds to drain in-flight requests on SIGTERM; 30
    SENTRY_DSN          unset: no Sentry; set: errors go to Sentry (needs the `sentry` extra)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from citywok.matcher.service import models, routes, urlfetch
from citywok.matcher.service.admission import Admission
from citywok.matcher.service.links import Links
from citywok.matcher.service.metrics import Metrics
from citywok.matcher.service.swap import Handle, ServedVersion
from citywok.matcher.service.workers import IdentifyPool, settings_for

from citywok import layout
from citywok import settings as settings_mod
from citywok.errors import CityWokError, CommandError

log = logging.getLogger("citywok.server")
access_log = logging.getLogger("citywok.access")

# seconds the start waits for yt-dlp's warm-up before taking requests regardless, should the import hang: less
# than the liveness probe the operator gives a matcher (operator/desired.py) allows before a restart
LINKS_WARM_WAIT = 20.0
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "too_large", 415: "unsupported_media"}


_D = settings_mod.ServeSettings()


@dataclass
class ServerConfig:
    """Everything `citywok serve` can be told, from flags, then environment, then defaults (the defaults
    are citywok.settings', which reads the environment)."""

    data_dir: Path = Path("./data")
    host: str = _D.host
    port: int = _D.port
    max_seasons: int | None = None
    seasons: tuple[int, ...] | None = None
    ingest_token: str | None = None
    url_allow: urlfetch.AllowList = field(default_factory=urlfetch.AllowList)
    max_upload_bytes: int = _D.max_upload_bytes
    workers: int = field(default_factory=settings_mod.cpu_budget)
    max_concurrency: int = field(default_factory=settings_mod.cpu_budget)
    max_queue: int | None = None  # None: 2 x max_concurrency
    max_queue_wait: float = _D.max_queue_wait
    max_downloads: int = _D.max_downloads
    poll_interval: float = _D.poll_interval
    url_timeout: float = _D.url_timeout
    body_timeout: float = _D.body_timeout
    timeline_max_seconds: float = _D.timeline_max_seconds
    link_cache_size: int = _D.link_cache_size
    link_cache_ttl: float = _D.link_cache_ttl
    shutdown_timeout: float = _D.shutdown_timeout
    sentry_dsn: str | None = None
    use_lmdb: bool = True
    db_version: str | None = None  # a pin; None follows `current`

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: object) -> ServerConfig:
        """The environment (the process's by default), read by citywok.settings; then the flags not None."""
        s, v = settings_mod.load(env), settings_mod.serve(env)
        given = {f.name: getattr(v, f.name) for f in fields(v) if f.name != "url_allow_hosts"}
        cfg = cls(data_dir=s.data_dir, max_seasons=s.max_seasons, seasons=s.seasons, sentry_dsn=s.sentry_dsn,
                  use_lmdb=s.use_lmdb, db_version=s.pin, url_allow=urlfetch.AllowList.parse(v.url_allow_hosts),
                  **{k: x for k, x in given.items() if x is not None})
        for k, x in flags.items():
            if x is not None:
                setattr(cfg, k, x)
        return cfg


class Service:
    """The app's state: served version, pools, admission, metrics."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.holder = ServedVersion(config.data_dir, config.max_seasons, writable=bool(config.ingest_token),
                                    on_swap=self._on_swap, legacy=not config.use_lmdb, only=config.seasons,
                                    pin=config.db_version)
        workers = config.workers if config.use_lmdb else 0
        self.identify_pool = IdentifyPool(workers, config.max_concurrency,
                                          settings_for(config.max_seasons, config.seasons, bool(config.ingest_token)))
        self.ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="ingest")
        self.swap_pool = ThreadPoolExecutor(1, thread_name_prefix="swap")
        slots = self.identify_pool.slots
        queue = config.max_queue if config.max_queue is not None else 2 * slots
        self.admission = Admission(slots, queue, config.max_queue_wait)
        self.downloads = Admission(config.max_downloads, 0)
        self.ingest_lock = asyncio.Lock()
        self.links = Links(config.url_allow, config.url_timeout, config.max_upload_bytes, config.timeline_max_seconds,
                           self.downloads, config.link_cache_size, config.link_cache_ttl)
        self.report_error: Callable[[BaseException], None] = lambda e: None

    def _on_swap(self, old: Handle | None, new: Handle) -> None:
        lib = new.library
        self.metrics.served(lib.version, lib.seasons, lib.nbytes(), lib.episode_count())
        if old is not None:
            self.metrics.swaps.inc()

    async def poll(self, hold: float = 0.0) -> bool:
        """Look at `current` once; after a swap, the workers open the new version before its first clip."""
        errors = self.holder.errors
        swapped = await asyncio.get_running_loop().run_in_executor(self.swap_pool, self.holder.poll)
        if self.holder.errors > errors:
            self.metrics.load_errors.inc(self.holder.errors - errors)
        cur = self.holder.current
        if swapped and cur is not None and not self.holder.legacy:
            await self.identify_pool.warm(cur.vdir, hold)
        return swapped

    async def watch(self) -> None:
        """Poll `current` forever; a failure is logged and the next poll tries again."""
        while True:
            await asyncio.sleep(self.config.poll_interval)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad version
                log.exception("version poll failed")

    def close(self) -> None:
        self.links.close()
        self.identify_pool.close()
        self.ingest_pool.shutdown(wait=True)
        self.swap_pool.shutdown(wait=True)
        self.holder.close()


def _route_name(request: web.Request) -> str:
    info = request.match_info
    if info.http_exception is not None or info.route.resource is None:
        return "unmatched"
    return info.route.resource.canonical


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """The one JSON error shape (the answer model ``Error``)."""
    return web.json_response(models.Error(error=code, message=message).body(), status=status, headers=headers)


def _http_message(e: web.HTTPException, request: web.Request, max_upload: int) -> str:
    if e.status == 404:
        return f"there is no {request.path} here; the API is described at /docs"
    if e.status == 405:
        allowed = ", ".join(sorted(getattr(e, "allowed_methods", ()) or ()))
        return f"{request.method} is not allowed on {request.path}" + (f" (use {allowed})" if allowed else "")
    if e.status == 413:
        return f"the upload is larger than the {max_upload}-byte limit"
    return e.text if e.text and not e.text.startswith(f"{e.status}:") else f"{e.reason} ({e.status})"


def _ours(e: Exception, request: web.Request, max_upload: int) -> CityWokError | None:
    """What aiohttp and the socket raise, as the CityWokError it means; ours as they are; None for a bug."""
    if isinstance(e, CityWokError):
        return e
    if isinstance(e, web.HTTPException):
        headers = {k: v for k, v in e.headers.items() if k.lower() in {"allow", "retry-after"}}
        return CityWokError(_http_message(e, request, max_upload), status=e.status,
                            code=HTTP_CODES.get(e.status, "http_error"), headers=headers)
    if isinstance(e, HttpProcessingError):  # framing aiohttp refused while a handler read the body
        return routes.ApiError(400, "bad_request", f"the request is malformed: {e.message or type(e).__name__}")
    if isinstance(e, ConnectionResetError):  # the client went away mid-body: its error, not ours
        return ClientClosed("the client closed the connection")
    return None


class ClientClosed(CityWokError):
    """The client closed its connection before its request was read."""

    status = 499
    code = "client_closed"


def _failure(e: Exception, request: web.Request, svc: Service, rid: str) -> tuple[web.Response, str]:
    """The response to a failed request, looked up from its exception's class, and what the access log
    says about it. A failure the server did not explain is logged, reported, and sent without detail."""
    err = _ours(e, request, svc.config.max_upload_bytes)
    if err is None or (err.internal and not isinstance(e, web.HTTPException)):
        log.exception("unhandled error on %s %s [%s]", request.method, request.path, rid)
        svc.report_error(e)
        return error_response(500, "internal", f"internal error (request id {rid})"), repr(e)
    logged = "client closed the connection before its request was read" if isinstance(err, ClientClosed) \
        else err.message
    return error_response(err.status, err.code, err.message, err.headers), logged


@web.middleware
async def observe(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Request id in and out, JSON errors, metrics, and one JSON log line per request."""
    svc: Service = request.app[routes.SERVICE]
    rid = request.headers.get("X-Request-Id", "")
    if not REQUEST_ID_RE.match(rid):
        rid = uuid.uuid4().hex
    request[routes.REQUEST_ID] = rid
    request[routes.T0] = t0 = time.perf_counter()
    svc.metrics.in_flight.inc()
    error: str | None = None
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp, error = _failure(e, request, svc, rid)
    except Exception as e:  # noqa: BLE001 - every failure is answered as JSON
        resp, error = _failure(e, request, svc, rid)
    finally:
        svc.metrics.in_flight.dec()
    resp.headers["X-Request-Id"] = rid
    elapsed = time.perf_counter() - t0
    route = _route_name(request)
    svc.metrics.requests.labels(route, request.method, str(resp.status)).inc()
    svc.metrics.latency.labels(route, request.method).observe(elapsed)
    line = {"ts": round(time.time(), 3), "request_id": rid, "method": request.method, "path": request.path,
            "route": route, "status": resp.status, "ms": round(elapsed * 1000, 1), "remote": request.remote}
    if error:
        line["error"] = error
    access_log.info(json.dumps(line))
    return resp


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    svc: Service = app[routes.SERVICE]
    # yt-dlp is imported and warmed in a thread of its own while the shards open: the first requests
    # are taken once both are done, since a clip answered during the warm-up waits for the interpreter
    # lock. Then whatever is there is served (every worker holding it open); if nothing is, readyz says
    # 503 until it appears.
    links = svc.links.start()
    await svc.poll(hold=0.05)
    # waited for in a thread, never cancelled; a failed warm-up is for a link request to report
    await asyncio.get_running_loop().run_in_executor(None, futures.wait, [links], LINKS_WARM_WAIT)
    if not svc.holder.ready:
        log.warning("no complete version under %s yet: answering 503 until one appears",
                    svc.config.data_dir / "fingerprints")
    watcher = asyncio.create_task(svc.watch())
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    svc.close()


def create_app(config: ServerConfig) -> web.Application:
    """The matcher app; the first version is loaded at startup and swapped when `current` moves."""
    app = web.Application(middlewares=[observe], client_max_size=config.max_upload_bytes + routes.UPLOAD_SLACK)
    app[routes.SERVICE] = Service(config)
    routes.setup_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


def _setup_logging() -> None:
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(logging.Formatter("%(message)s"))
    access_log.handlers[:] = [h]
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def _setup_sentry(dsn: str | None, svc: Service) -> None:
    if not dsn:
        return
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed (pip install 'citywok[sentry]')")
        return
    sentry_sdk.init(dsn=dsn, traces_sample_rate=0.0)
    svc.report_error = sentry_sdk.capture_exception


def main(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT, then drain in-flight requests (up to SHUTDOWN_TIMEOUT) and close."""
    config = ServerConfig.from_env(host=getattr(args, "host", None), port=getattr(args, "port", None),
                                   data_dir=getattr(args, "data_dir", None),
                                   db_version=getattr(args, "db_version", None))
    if config.db_version:
        layout.check_version(config.db_version)
    _setup_logging()
    app = create_app(config)
    _setup_sentry(config.sentry_dsn, app[routes.SERVICE])
    svc = app[routes.SERVICE]
    log.info("citywok serve on http://%s:%d (data %s, %s, ingest %s)", config.host, config.port, config.data_dir,
             f"{svc.identify_pool.workers} worker processes" if svc.identify_pool.workers
             else f"{config.max_concurrency} identify threads", "on" if config.ingest_token else "off")
    try:
        web.run_app(app, host=config.host, port=config.port, access_log=None,
                    shutdown_timeout=config.shutdown_timeout, print=None)
    except OSError as e:
        raise CommandError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}"
                           " (is another server using the port? choose one with --port or PORT)") from None
    return 0
