"""The HTTP routes of the matcher, in one place. Handlers parse and answer; the work runs in pools.

Every failure is a :class:`~citywok.errors.CityWokError` (an :class:`ApiError` for the request's own
faults), answered as ``{"error": code, "message": sentence}`` by the server's middleware with the status
and headers its class carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import swagger_ui_bundle
from aiohttp import BodyPartReader, web
from citywok.matcher.engine.decode import DecodeError
from citywok.matcher.service import bodies, models, openapi, timeline
from citywok.matcher.service.admission import Overloaded
from citywok.matcher.service.metrics import identify_outcome
from citywok.matcher.service.swap import NotReady
from citywok.matcher.service.workers import WorkerLost
from citywok.matcher.store.ingest import EPISODE_ID_RE, ingest_into
from citywok.matcher.store.shard import ShardError

from citywok import layout
from citywok.errors import CityWokError

STATIC = Path(__file__).parent / "static"
UPLOAD_SLACK = 1 << 20  # multipart framing and small fields around the file

SERVICE: web.AppKey[Any] = web.AppKey("citywok_service")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
T0: web.RequestKey[float] = web.RequestKey("t0")


class ApiError(CityWokError):
    """A request the routes refuse: HTTP status, a stable code, and a sentence for people."""

    status = 400
    code = "bad_request"

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, status=status, code=code, headers=headers)


# -- identify ------------------------------------------------------------------------------------


@dataclass
class Clip:
    data: bytes
    source: str  # "upload" | "url" | "body"
    url: str | None = None  # for "url": the link, downloaded by links.py


async def read_clip(request: web.Request, max_bytes: int, body_timeout: float = bodies.BODY_TIMEOUT) -> Clip:
    """The clip of an identify request: a multipart/form ``file`` or ``url``, a JSON ``url``, or a raw body.
    A ``url`` is not downloaded here: links.py does that, in download threads of its own."""
    declared = request.content_length
    if declared is not None and declared > max_bytes + UPLOAD_SLACK:
        raise too_large(max_bytes)
    # the media type alone: aiohttp's full Content-Type parser costs more than the rest of the request
    ctype = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    url: Any = None
    if ctype == "multipart/form-data":
        with bodies.malformed_is_400("multipart form"):
            upload, url = await bodies.within(_read_multipart(request, max_bytes), body_timeout)
        if upload is not None:
            return Clip(upload, "upload")
    elif ctype == "application/x-www-form-urlencoded":
        with bodies.malformed_is_400("form"):
            url = (await bodies.within(request.post(), body_timeout)).get("url")
    elif ctype == "application/json":
        try:
            body = await bodies.within(request.json(), body_timeout)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, "bad_json", f"the request body is not valid JSON ({e})") from None
        except (LookupError, RecursionError, ValueError) as e:
            why = "nested too deep" if isinstance(e, RecursionError) else str(e)
            raise ApiError(400, "bad_json", f"the request body is not valid JSON ({why})") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_json", "the JSON body must be an object like {\"url\": \"https://...\"}")
        url = body.get("url")
    elif request.body_exists:
        data = await bodies.within(request.read(), body_timeout)
        if len(data) > max_bytes:
            raise too_large(max_bytes)
        return Clip(data, "body")
    if url is None or (isinstance(url, str) and not url.strip()):
        raise ApiError(400, "missing_input",
                       "send the clip as a multipart 'file' field, or a 'url' to download it from")
    if not isinstance(url, str):
        raise ApiError(400, "bad_request", "'url' must be a string")
    return Clip(b"", "url", url.strip())


async def _read_multipart(request: web.Request, max_bytes: int) -> tuple[bytes | None, str | None]:
    """The ``file`` upload (read into memory, refused past ``max_bytes``) or the ``url`` field of a
    multipart form, streamed: no temporary file per request, and the first file part ends the reading."""
    url: str | None = None
    plain_file = False
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file" and part.filename is not None:
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data += chunk
                if len(data) > max_bytes:
                    raise too_large(max_bytes)
            if not data:
                raise ApiError(400, "empty_file", f"the uploaded file {part.filename!r} is empty")
            return bytes(data), None
        if part.name == "file":
            plain_file = True
        elif part.name == "url":
            url = await part.text()
    if plain_file and url is None:
        raise ApiError(400, "bad_request", "the 'file' field must be a file upload")
    return None, url


def _read_upload(f: web.FileField, max_bytes: int) -> bytes:
    data = f.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    if not data:
        raise ApiError(400, "empty_file", f"the uploaded file {f.filename!r} is empty")
    return data


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "too_large",
                    f"the clip is larger than the {max_bytes}-byte limit; send a few seconds of audio")


async def _answer_data(svc: Any, data: bytes, start: float = 0.0, admitted: bool = False) -> dict[str, Any]:
    """Decode once and identify: a clip's answer, or a timeline for audio longer than a clip.
    ``admitted``: the caller holds an admission slot already (it read the body under it)."""
    m = svc.metrics
    try:
        with contextlib.nullcontext() if admitted else svc.admission.slot():
            m.queue.set(svc.admission.admitted)
            with svc.holder.acquire() as lib:
                got = await svc.identify_pool.run(lib, timeline.decode_job, data, start, timeline.CLIP_SECONDS,
                                                  svc.config.timeline_max_seconds)
                if isinstance(got, timeline.Long):
                    got = await timeline.identify_windows(svc.identify_pool, lib, got)
        svc.admission.record(got.decode_s + got.match_s)
    except Overloaded:
        if not admitted:  # the caller counts its own
            m.rejected.inc()
        raise
    except WorkerLost:
        m.workers_lost.inc()
        raise
    finally:
        m.queue.set(svc.admission.admitted)
    m.decode_seconds.observe(got.decode_s)
    m.match_seconds.observe(got.match_s)
    if isinstance(got, timeline.TimelineResult):
        body = timeline.timeline_json(got, lib.version)
    else:
        m.hashes.observe(got.result.hashes_looked_up)
        body = got.result.to_json()
    body["decode_ms"] = round(got.decode_s * 1000, 1)
    body["match_ms"] = round(got.match_s * 1000, 1)
    return body


async def _answer_link(svc: Any, url: str) -> dict[str, Any]:
    """A link's answer: downloaded once (links.py, no identify slot held meanwhile), then identified."""
    h = svc.holder.current
    if h is None:
        raise NotReady()

    async def compute(got: Any) -> dict[str, Any]:
        svc.metrics.url_bytes.inc(len(got.data))
        return await _answer_data(svc, got.data, got.source.start_seconds)

    return await svc.links.answer(url, h.library.version, compute)


async def identify(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    m = svc.metrics
    outcome = "server_error"  # a failure the server did not explain
    try:
        if not svc.holder.ready:
            raise NotReady()
        body: dict[str, Any] | None = None
        try:
            # the slot is taken before the body is read: every upload held in memory is a job admitted;
            # a link gives it back before its download (a slow site must not hold an identify slot)
            with svc.admission.slot():
                m.queue.set(svc.admission.admitted)
                clip = await read_clip(request, svc.config.max_upload_bytes, svc.config.body_timeout)
                if clip.url is None:
                    body = await _answer_data(svc, clip.data, admitted=True)
                    body["source"] = {"kind": clip.source}
        except Overloaded:
            m.rejected.inc()
            raise
        finally:
            m.queue.set(svc.admission.admitted)
        if body is None:
            body = await _answer_link(svc, clip.url or "")
        outcome = "match" if body["match"] else "no_match"
        body["elapsed_ms"] = round((time.perf_counter() - request[T0]) * 1000, 1)
        answer = models.IDENTIFY.validate_python(body)
        return web.json_response(models.IDENTIFY.dump_python(answer, mode="json"))
    except CityWokError as e:
        outcome = identify_outcome(e.status, e.code)
        raise
    finally:
        m.identify.labels(outcome).inc()


# -- ingest --------------------------------------------------------------------------------------


def check_token(request: web.Request, token: str | None) -> None:
    if not token:
        raise ApiError(404, "ingest_disabled", "ingest is disabled on this server (no INGEST_TOKEN is configured)")
    auth = request.headers.get("Authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "unauthorized", "ingest needs an 'Authorization: Bearer <token>' header",
                       {"WWW-Authenticate": 'Bearer realm="citywok-ingest"'})
    if not hmac.compare_digest(bodies.header_bytes(given.strip()), bodies.header_bytes(token)):
        raise ApiError(403, "forbidden", "the ingest token is not valid")


async def ingest(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    check_token(request, svc.config.ingest_token)
    if not svc.holder.ready:
        raise NotReady()
    if request.content_type != "multipart/form-data":
        raise ApiError(400, "bad_request", "send ingest as multipart/form-data with 'episode_id' and 'file'")
    with bodies.malformed_is_400("multipart form"):
        form = await bodies.within(request.post(), svc.config.body_timeout)
    episode_id = str(form.get("episode_id") or "").strip()
    if not EPISODE_ID_RE.match(episode_id):
        raise ApiError(400, "bad_episode_id", "'episode_id' is required: letters, digits, spaces and ._-:+()[] "
                       "up to 128 characters, e.g. S01E02")
    try:
        season = layout.parse_season(str(form.get("season") or "1"))
    except ValueError:
        raise ApiError(400, "bad_season", "'season' must be a whole number from 1 to 99 (digits 0-9)") from None
    f = form.get("file")
    if not isinstance(f, web.FileField):
        raise ApiError(400, "missing_input", "send the episode as a multipart 'file' field")
    data = _read_upload(f, svc.config.max_upload_bytes)
    title = str(form.get("title") or "").strip() or None
    loop = asyncio.get_running_loop()
    try:
        async with svc.ingest_lock:
            with svc.holder.acquire() as lib:
                r = await loop.run_in_executor(svc.ingest_pool, ingest_into, lib, svc.config.data_dir, season,
                                               episode_id, data, title)
                svc.metrics.served(lib.version, lib.seasons, lib.nbytes(), lib.episode_count())
    except (DecodeError, ShardError):
        svc.metrics.ingest.labels("error").inc()
        raise
    if r.status == "failed":
        svc.metrics.ingest.labels("error").inc()
        raise ApiError(422, "too_short", f"{episode_id}: {r.error}")
    svc.metrics.ingest.labels(r.status).inc()
    answer = models.IngestAnswer(episode_id=episode_id, season=season, status=cast(Any, r.status),
                                 seconds=round(r.seconds, 3), hashes=r.hashes, db_version=lib.version)
    return web.json_response(answer.body(), status=201 if r.status == "added" else 200)


# -- status, docs, page --------------------------------------------------------------------------


async def api_test(request: web.Request) -> web.Response:
    h = request.app[SERVICE].holder.current
    lib = h.library if h else None
    return web.json_response(models.ApiTest(
        status="ok",
        message="CityWok API is running (Audio-Only)",
        features=models.Features(audio=True, url_download=True, ingest=bool(request.app[SERVICE].config.ingest_token)),
        ready=lib is not None,
        db_version=lib.version if lib else None,
        seasons=lib.seasons if lib else [],
        episodes=lib.episode_count() if lib else 0,
        workers=len(request.app[SERVICE].identify_pool.pids()),
        **request.app[SERVICE].holder.problems(),
    ).body())


async def stats(request: web.Request) -> web.Response:
    with request.app[SERVICE].holder.acquire() as lib:
        return web.json_response(models.Stats(version=lib.version, **lib.stats()).body())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(models.Health(status="ok").body())


async def readyz(request: web.Request) -> web.Response:
    holder = request.app[SERVICE].holder
    h = holder.current
    if h is None or not holder.ready:
        raise NotReady()
    return web.json_response(models.Ready(status="ready", db_version=h.library.version, seasons=h.library.seasons,
                                          **holder.problems()).body())


async def metrics(request: web.Request) -> web.Response:
    m = request.app[SERVICE].metrics
    return web.Response(body=m.render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec(request.app[SERVICE].config.max_upload_bytes))


async def docs(request: web.Request) -> web.FileResponse:
    """Swagger UI (the swagger-ui-bundle package's files, served from here: no CDN)."""
    return web.FileResponse(STATIC / "docs.html")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")



def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/identify", identify)
    r.add_post("/api/v1/ingest", ingest)
    r.add_get("/api/v1/test", api_test)
    r.add_get("/api/v1/stats", stats)
    r.add_get("/api/v1/openapi.json", openapi_json)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/docs", docs)
    r.add_get("/", index)
    r.add_static("/static/", STATIC, show_index=False)
    r.add_static("/docs/ui/", swagger_ui_bundle.swagger_ui_path, show_index=False)
