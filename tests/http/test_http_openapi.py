"""The OpenAPI document against what the real server sends: no field the schema lacks, none it names but
no answer carries; /api/v1/stats; every operation has an id, a tag and a curl line."""

from __future__ import annotations

from typing import Any

import numpy as np
import requests
from citywok.matcher import synth
from citywok.matcher.service.urlfetch import AllowList
from openapi_spec_validator import validate

from tests.http.support import RATE, Origin, clip_bytes, episode_pcm


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _walk(spec: dict[str, Any], schema: dict[str, Any], body: Any, path: str, seen: dict[str, set[str]]) -> None:
    """Every key of ``body`` is a property of ``schema`` (recursively); records which properties were sent."""
    schema = _resolve(spec, schema)
    if isinstance(body, dict) and "properties" in schema:
        props = schema["properties"]
        extra = set(body) - set(props)
        assert not extra, f"{path} sends {sorted(extra)}, which the schema lacks"
        name = next(k for k, v in spec["components"]["schemas"].items() if v is schema)
        seen.setdefault(name, set()).update(body)
        for k, v in body.items():
            _walk(spec, props[k], v, f"{path}.{k}", seen)
    elif isinstance(body, list) and "items" in schema:
        for v in body:
            _walk(spec, schema["items"], v, f"{path}[]", seen)


def test_responses_and_schema_agree(start_server, data_dir) -> None:
    origin = Origin().start()
    server = start_server(data_dir, ingest_token="t0ken", url_allow=AllowList.parse("127.0.0.1"))
    try:
        spec = requests.get(f"{server.url}/api/v1/openapi.json", timeout=5).json()
        validate(spec)
        u = server.url
        stranger = synth.encode(synth.episode(99, 5.0, 22050), 22050, "mp3")
        episode = synth.encode(episode_pcm(4), RATE, "flac")
        calls = [
            ("/api/v1/identify", "post", requests.post(f"{u}/api/v1/identify",
                                                       files={"file": ("c.mp3", clip_bytes(2, 12.0))}, timeout=30)),
            ("/api/v1/identify", "post", requests.post(f"{u}/api/v1/identify",
                                                       files={"file": ("n.mp3", stranger)}, timeout=30)),
            ("/api/v1/identify", "post", requests.post(f"{u}/api/v1/identify",
                                                       json={"url": f"{origin.url}/clip.mp3"}, timeout=30)),
            ("/api/v1/identify", "post", requests.post(f"{u}/api/v1/identify", data=b"", timeout=30)),
            ("/api/v1/identify", "post", requests.post(f"{u}/api/v1/identify", timeout=60, files={  # a timeline
                "file": ("long.mp3", synth.encode(np.concatenate([episode_pcm(1), episode_pcm(2)]), RATE, "mp3"))})),
            ("/api/v1/ingest", "post", requests.post(f"{u}/api/v1/ingest", headers={"Authorization": "Bearer t0ken"},
                                                     data={"episode_id": "S01E04", "title": "Four"},
                                                     files={"file": ("e.flac", episode)}, timeout=120)),
            ("/api/v1/stats", "get", requests.get(f"{u}/api/v1/stats", timeout=5)),
            ("/api/v1/test", "get", requests.get(f"{u}/api/v1/test", timeout=5)),
            ("/healthz", "get", requests.get(f"{u}/healthz", timeout=5)),
            ("/readyz", "get", requests.get(f"{u}/readyz", timeout=5)),
        ]
    finally:
        origin.stop()
    seen: dict[str, set[str]] = {}
    for path, method, r in calls:
        op = spec["paths"][path][method]
        assert str(r.status_code) in op["responses"], (path, r.status_code, r.text)
        schema = op["responses"][str(r.status_code)]["content"]["application/json"]["schema"]
        _walk(spec, schema, r.json(), f"{method.upper()} {path} {r.status_code}", seen)
    for name, schema in spec["components"]["schemas"].items():
        unsent = set(schema.get("properties", {})) - seen.get(name, set())
        assert not unsent, f"the schema {name} names {sorted(unsent)}, which no answer sent"
    stats = calls[6][2].json()
    assert stats == {"version": "v1", "seasons": 1, "episodes": 4, "hours": stats["hours"],
                     "hashes": stats["hashes"]}
    assert abs(stats["hours"] - 4 * 40 / 3600) < 0.001 and stats["hashes"] > 1000
    ident = calls[0][2].json()
    assert ident["episode_id"] == "S01E02" and ident["title"] == "S01E02"  # built with the id as its title


def test_every_operation_is_named_tagged_and_has_a_curl_line(server) -> None:
    spec = requests.get(f"{server.url}/api/v1/openapi.json", timeout=5).json()
    ids = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ids.append(op["operationId"])
            assert op["tags"] and op["tags"][0] in {t["name"] for t in spec["tags"]}
            assert "curl " in op["description"] and path in op["description"], (method, path)
    assert len(ids) == len(set(ids)) and "getStats" in ids
    example = spec["paths"]["/api/v1/identify"]["post"]["responses"]["200"]["content"]["application/json"]["example"]
    props = spec["components"]["schemas"]["Identification"]["properties"]
    assert set(example) <= set(props) and "title" in example
    docs = requests.get(f"{server.url}/docs", timeout=5).text
    assert "/docs/ui/swagger-ui-bundle.js" in docs and "https://" not in docs
    assert requests.get(f"{server.url}/docs/ui/swagger-ui-bundle.js", timeout=5).status_code == 200
