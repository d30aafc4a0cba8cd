"""The OpenAPI 3.1 description of the matcher API, served at /api/v1/openapi.json and rendered by /docs."""

from __future__ import annotations

from typing import Any

from citywok.matcher.engine.identify import DEFAULT_POLICY

from citywok import __version__


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, ref: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def spec(max_upload_bytes: int) -> dict[str, Any]:
    """The API description; ``max_upload_bytes`` is this server's upload limit."""
    clip_form = {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary",
                     "description": "audio or video with an audio track, 1-30 s are used"},
            "url": {"type": "string", "format": "uri",
                    "description": "http(s) URL to download the clip from (public addresses only)"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CityWok matcher API",
            "version": __version__,
            "description": "Which episode, and where in it, is this clip from? Send 3-10 s of audio; get the "
                           f"episode id and offset. Uploads are limited to {max_upload_bytes} bytes. Every error "
                           "is JSON: {\"error\": code, \"message\": sentence}.",
        },
        "paths": {
            "/api/v1/identify": {"post": {
                "summary": "Identify a clip",
                "description": "Send the clip as a multipart `file`, or a `url` (form field or JSON body). "
                               "Beyond the server's queue it answers 429 at once, with Retry-After.",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": clip_form},
                    "application/json": {"schema": {"type": "object", "required": ["url"],
                                                     "properties": {"url": {"type": "string", "format": "uri"}}}},
                }},
                "responses": {
                    "200": _json("the answer (match true or false)", "Identification"),
                    "400": _error("malformed request: no file or url, bad JSON, bad URL"),
                    "403": _error("the URL points at a private, loopback or metadata address"),
                    "413": _error("the upload or the download is too large"),
                    "415": _error("not decodable as audio"),
                    "422": _error("too short to identify (under 1 s of audio)"),
                    "429": _error("overloaded: retry after the Retry-After seconds"),
                    "502": _error("the URL could not be downloaded"),
                    "503": _error("no fingerprint version is loaded yet"),
                    "504": _error("the URL download timed out"),
                },
            }},
            "/api/v1/ingest": {"post": {
                "summary": "Add an episode (needs the ingest token)",
                "description": "Fingerprints `file` as `episode_id` into `season` of the served version; the "
                               "episode is identifiable when the call returns. Disabled (404) unless the server "
                               "has an INGEST_TOKEN.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["episode_id", "file"],
                    "properties": {
                        "episode_id": {"type": "string", "example": "S01E02"},
                        "season": {"type": "integer", "minimum": 1, "maximum": 99, "default": 1},
                        "title": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    }}}}},
                "responses": {
                    "201": _json("added", "IngestResult"),
                    "200": _json("replaced, or skipped as unchanged", "IngestResult"),
                    "400": _error("missing or invalid field"),
                    "401": _error("no bearer token"),
                    "403": _error("wrong token"),
                    "404": _error("ingest is disabled on this server"),
                    "413": _error("too large"),
                    "415": _error("not decodable as audio"),
                    "422": _error("too short"),
                    "503": _error("no version loaded"),
                },
            }},
            "/api/v1/test": {"get": {"summary": "Is the API running, and what does it serve",
                                     "responses": {"200": {"description": "status, features, db_version, seasons, "
                                                                          "episodes"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "the process answers"}}}},
            "/readyz": {"get": {"summary": "Readiness: a verified version is loaded",
                                "responses": {"200": {"description": "ready"}, "503": _error("not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition format"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
                "Candidate": {"type": "object", "properties": {
                    "episode_id": {"type": "string"}, "season": {"type": "integer"},
                    "offset_seconds": {"type": "number"}, "score": {"type": "integer"},
                    "spread": {"type": "integer"}, "title": {"type": ["string", "null"]}}},
                "Identification": {"type": "object", "required": ["match", "db_version", "elapsed_ms"], "properties": {
                    "match": {"type": "boolean"},
                    "episode_id": {"type": ["string", "null"]},
                    "season": {"type": ["integer", "null"]},
                    "offset_seconds": {"type": ["number", "null"], "description": "where the clip starts"},
                    "confidence": {"type": "number", "description": "0-1: how far ahead of the runner-up"},
                    "score": {"type": "integer", "description": "aligned hashes at the best offset"},
                    "spread": {"type": "integer", "description": (
                        f"the same, counting at most {DEFAULT_POLICY.part_cap} from each half second of the clip:"
                        f" a match needs {DEFAULT_POLICY.min_score}")},
                    "speed": {"type": "number"},
                    "query_hashes": {"type": "integer"},
                    "hashes_looked_up": {"type": "integer"},
                    "clip_seconds": {"type": "number"},
                    "db_version": {"type": "string"},
                    "elapsed_ms": {"type": "number", "description": "server time for this request"},
                    "decode_ms": {"type": "number"},
                    "match_ms": {"type": "number"},
                    "source": {"type": "string", "enum": ["upload", "url", "body"]},
                    "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
                    "ambiguous": {"type": "boolean",
                                  "description": "the clip is audio several episodes share (theme, credits): "
                                                 "match is true, episode_id is null, `episodes` lists them"},
                    "episodes": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
                    "shared_segment": {"type": ["string", "null"], "description": "what the shared audio is"},
                    "also_at": {"type": "array", "items": {"type": "number"},
                                "description": "other offsets (s) of the episode where the clip's audio recurs "
                                               "(a loop, a reprised cue): the offset is one of these places"},
                }},
                "IngestResult": {"type": "object", "properties": {
                    "episode_id": {"type": "string"}, "season": {"type": "integer"},
                    "status": {"type": "string", "enum": ["added", "replaced", "skipped"]},
                    "seconds": {"type": "number"}, "hashes": {"type": "integer"}, "db_version": {"type": "string"}}},
            },
        },
    }
