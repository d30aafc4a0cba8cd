"""The OpenAPI document of the matcher API, generated from the models the handlers serialise with
(:mod:`citywok.matcher.service.models`); served at /api/v1/openapi.json and rendered by Swagger UI at /docs.

OpenAPI 3.0 (what the bundled Swagger UI renders): pydantic's JSON Schema is lowered to it (``nullable``
for ``X | None``, one ``example``, ``enum`` for constants).
"""

from __future__ import annotations

from typing import Any

from citywok.matcher.engine.identify import DEFAULT_POLICY
from citywok.matcher.service import models, openapi_links

from citywok import __version__

REF = "#/components/schemas/{model}"
HOST = "http://localhost:8000"

# What the engine's dataclass fields mean to a client (the engine itself carries no schema library).
IDENTIFY_FIELDS = {
    "match": "true when the clip was found (also when it is ambiguous)",
    "episode_id": "the episode, e.g. S01E02; null on no match or when ambiguous",
    "title": "the episode's title, when one was ingested",
    "offset_seconds": "where in the episode the clip starts, in seconds",
    "confidence": "0-1: how far ahead of the runner-up",
    "score": "aligned hashes at the best offset",
    "spread": (f"the same, counting at most {DEFAULT_POLICY.part_cap} from each half second of the clip: a match"
               f" needs {DEFAULT_POLICY.min_score}"),
    "speed": "the same as time_scale (older clients read it)",
    "time_scale": ("how many times faster the clip plays than the episode (1.25: sped up, 0.8: slowed down);"
                   " offset_seconds is in the episode's own time"),
    "pitch_scale": ("the clip's frequencies over the episode's (1.189: three semitones up; equal to time_scale"
                    " for a plain speed change)"),
    "edit": ('the scale change in words, e.g. "sped up 1.25x", "tempo 0.80x, pitch kept", "pitch +3.0 semitones,'
             ' tempo kept"; null for an unedited clip'),
    "candidates": "the best episodes, best first (the runner-ups follow the answer)",
    "ambiguous": "the clip is audio several episodes share (theme, credits): `episodes` lists them",
    "episodes": "when ambiguous: every episode the clip could be, with its offset",
    "shared_segment": "when ambiguous: what the shared audio is",
    "also_at": "other offsets (s, ascending) of the episode where the clip's audio recurs",
    "elapsed_ms": "server time for this request",
    "decode_ms": "time decoding the clip",
    "match_ms": "time looking it up and deciding",
    "source": "where the clip came from (kind: upload, url or body); for a link, the page title, uploader, "
              "page URL, yt-dlp extractor, duration and the start time (t=) it named",
    "cached": "a link's answer given again from the recent-links cache (by link and fingerprint version)",
    "download_ms": "for a link: time downloading its audio",
    "timeline": "audio longer than a clip (30 s): each stretch of it with the episode and offset it matched, or "
                "none; episode_id, season and offset_seconds are then the longest matched stretch's, and "
                "confidence the share of the audio matched",
    "timeline_text": "the timeline in one line, e.g. 0:00-0:42 S03E02 at 12:10; 0:42-1:30 no match",
    "windows": "overlapping windows identified for the timeline",
}


def _lower(node: Any) -> Any:
    """JSON Schema 2020-12 as pydantic writes it -> the OpenAPI 3.0 dialect."""
    if isinstance(node, list):
        return [_lower(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _lower(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    variants = out.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        out.pop("anyOf")
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        out["nullable"] = True
    if "examples" in out and isinstance(out["examples"], list):
        out["example"] = out.pop("examples")[0]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


def schemas() -> dict[str, Any]:
    """Every component schema, from the models."""
    found: dict[str, Any] = {}
    ident = models.IDENTIFY.json_schema(ref_template=REF)
    found.update(ident.pop("$defs", {}))
    for name, text in IDENTIFY_FIELDS.items():
        if name in ident["properties"]:
            ident["properties"][name]["description"] = text
    found["Identification"] = ident
    for model in (models.Error, models.IngestAnswer, models.ApiTest, models.Health, models.Ready, models.Stats):
        s = model.model_json_schema(ref_template=REF)
        found.update(s.pop("$defs", {}))
        found[model.__name__] = s
    return {k: _lower(v) for k, v in sorted(found.items())}


def _json(description: str, ref: str, example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": REF.format(model=ref)}}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _errors(**codes: str) -> dict[str, Any]:
    return {code: _json(text, "Error") for code, text in codes.items()}


def _op(op_id: str, tag: str, summary: str, curl: str, description: str = "", **rest: Any) -> dict[str, Any]:
    text = (description + "\n\n" if description else "") + f"```\n{curl}\n```"
    return {"operationId": op_id, "tags": [tag], "summary": summary, "description": text, **rest}


EXAMPLE_MATCH = {"match": True, "episode_id": "S01E03", "title": "Kitchen Fire", "season": 1,
                 "offset_seconds": 42.0, "confidence": 0.97, "db_version": "v1", "elapsed_ms": 31.5}


def _identify_op(mb: str) -> dict[str, Any]:
    """POST /api/v1/identify; ``mb`` is the server's upload limit in words."""
    clip_form = {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "audio or video with an audio track; "
                 "1-30 s are used"},
        "url": {"type": "string", "format": "uri", "description": openapi_links.URL_DESCRIPTION},
    }}
    return _op(
        "identify", "identify", "Identify a clip", f"curl -F file=@clip.mp3 {HOST}/api/v1/identify",
        "Send the clip as a multipart `file`, or a `url` (form field or JSON body). Beyond the server's queue it "
        "answers 429 at once, with Retry-After.",
        requestBody={"required": True, "content": {
            "multipart/form-data": {"schema": clip_form},
            "application/json": {"schema": {"type": "object", "required": ["url"], "properties": {
                "url": {"type": "string", "format": "uri", "example": "https://example.com/clip.mp3"}}}},
        }},
        responses={"200": _json("the answer (match true or false)", "Identification", EXAMPLE_MATCH),
                   **_errors(**{"400": "malformed request: no file or url, bad JSON, bad URL",
                                "413": f"larger than {mb}; " + openapi_links.LINK_ERRORS["413"],
                                **{k: openapi_links.LINK_ERRORS[k] for k in ("403", "415", "422", "502", "504")},
                                "429": "overloaded: retry after Retry-After seconds",
                                "503": "no fingerprint version loaded yet"})})


def _ingest_op(mb: str) -> dict[str, Any]:
    """POST /api/v1/ingest; ``mb`` is the server's upload limit in words."""
    return _op(
        "ingestEpisode", "ingest", "Add an episode (needs the ingest token)",
        f"curl -H 'Authorization: Bearer $INGEST_TOKEN' -F episode_id=S01E02 -F season=1 -F title='Second Wind' "
        f"-F file=@S01E02.mkv {HOST}/api/v1/ingest",
        "Fingerprints `file` as `episode_id` into `season` of the served version; identifiable when the call "
        "returns. Disabled (404) unless the server has an INGEST_TOKEN.",
        security=[{"bearer": []}],
        requestBody={"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["episode_id", "file"], "properties": {
                "episode_id": {"type": "string", "example": "S01E02"},
                "season": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
                "title": {"type": "string", "example": "Second Wind"},
                "file": {"type": "string", "format": "binary"}}}}}},
        responses={"201": _json("added", "IngestAnswer"), "200": _json("replaced, or skipped as unchanged",
                                                                       "IngestAnswer"),
                   **_errors(**{"400": "missing or invalid field", "401": "no bearer token", "403": "wrong token",
                                "404": "ingest is disabled on this server", "409": "the shard refused the write",
                                "413": f"larger than {mb}", "415": "not decodable as audio", "422": "too short",
                                "503": "no version loaded"})})


def _get(op_id: str, tag: str, summary: str, path: str, ref: str, **errors: str) -> dict[str, Any]:
    return {"get": _op(op_id, tag, summary, f"curl {HOST}{path}",
                       responses={"200": _json(summary, ref), **_errors(**errors)})}


def _paths(mb: str) -> dict[str, Any]:
    return {
        "/api/v1/identify": {"post": _identify_op(mb)},
        "/api/v1/ingest": {"post": _ingest_op(mb)},
        "/api/v1/stats": _get("getStats", "status", "What is indexed", "/api/v1/stats", "Stats",
                              **{"503": "no version loaded"}),
        "/api/v1/test": _get("apiTest", "status", "Is the API running, and what does it serve", "/api/v1/test",
                             "ApiTest"),
        "/healthz": _get("healthz", "status", "Liveness", "/healthz", "Health"),
        "/readyz": _get("readyz", "status", "Readiness: a verified version is loaded", "/readyz", "Ready",
                        **{"503": "not ready"}),
        "/metrics": {"get": _op("metrics", "status", "Prometheus metrics", f"curl {HOST}/metrics",
                                responses={"200": {"description": "text exposition format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}})},
    }


def spec(max_upload_bytes: int) -> dict[str, Any]:
    """The API description; ``max_upload_bytes`` is this server's upload limit."""
    mb = f"{max_upload_bytes / 2**20:g} MiB"
    return {
        "openapi": "3.0.3",
        "info": {"title": "CityWok matcher API", "version": __version__,
                 "description": "Which episode, and where in it, is this clip from? Send 3-10 s of audio; get the "
                                f"episode, its title and the offset. Uploads are limited to {mb}. Every error is "
                                "JSON: `{\"error\": code, \"message\": sentence}`."},
        "tags": [{"name": "identify", "description": "clips in, episodes out"},
                 {"name": "ingest", "description": "adding episodes"},
                 {"name": "status", "description": "what the server serves, and whether it is ready"}],
        "paths": _paths(mb),
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas()},
    }
