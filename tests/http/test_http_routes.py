"""Status, docs, page and metrics routes of the real server."""

from __future__ import annotations

import json
import logging

import requests

import citywok
from tests.http.support import ServerThread, clip_bytes


def test_api_test_describes_what_is_served(server) -> None:
    body = requests.get(f"{server.url}/api/v1/test", timeout=5).json()
    assert body["status"] == "ok"
    assert body["message"] == "CityWok API is running (Audio-Only)"
    assert body["features"]["audio"] is True and body["features"]["url_download"] is True
    assert body["db_version"] == "v1"
    assert body["seasons"] == [1]
    assert body["episodes"] == 3


def test_health_and_readiness(server) -> None:
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
    r = requests.get(f"{server.url}/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["db_version"] == "v1"


def test_openapi_and_docs(server) -> None:
    spec = requests.get(f"{server.url}/api/v1/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.")
    paths = {"/api/v1/identify", "/api/v1/ingest", "/api/v1/test", "/healthz", "/readyz", "/metrics"}
    assert paths <= set(spec["paths"])
    for status in ("200", "400", "413", "415", "422", "429", "503"):
        assert status in spec["paths"]["/api/v1/identify"]["post"]["responses"]
    answer = spec["components"]["schemas"]["Identification"]["properties"]
    assert {"time_scale", "pitch_scale", "edit", "speed"} <= set(answer)
    assert "episode's own time" in answer["time_scale"]["description"]
    docs = requests.get(f"{server.url}/docs", timeout=5)
    assert docs.status_code == 200 and "text/html" in docs.headers["Content-Type"]
    assert "/static/docs.js" in docs.text and "https://" not in docs.text  # self-contained, no CDN
    js = requests.get(f"{server.url}/static/docs.js", timeout=5)
    assert js.status_code == 200 and "openapi.json" in js.text


def test_index_page_and_assets(server) -> None:
    page = requests.get(f"{server.url}/", timeout=5)
    assert page.status_code == 200 and 'id="file"' in page.text and "MediaRecorder" not in page.text
    app_js = requests.get(f"{server.url}/static/app.js", timeout=5).text
    assert "/api/v1/identify" in app_js and "MediaRecorder" in app_js
    assert requests.get(f"{server.url}/static/style.css", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/static/../server.py", timeout=5).status_code in {403, 404}


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name or any(f'{k}="{v}"' not in rest for k, v in labels.items()):
            continue
        found = True
        total += float(value)
    assert found, f"{name} {labels} not exported"
    return total


def test_metrics_appear_after_traffic(server) -> None:
    u = server.url
    requests.post(f"{u}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 8.0))}, timeout=30)
    requests.post(f"{u}/api/v1/identify", files={"file": ("c.mp3", b"junk" * 100)}, timeout=30)
    requests.post(f"{u}/api/v1/identify", timeout=30)
    text = requests.get(f"{u}/metrics", timeout=5).text
    assert _metric(text, "citywok_http_requests_total", route="/api/v1/identify", status="200") == 1
    assert _metric(text, "citywok_http_requests_total", route="/api/v1/identify", status="415") == 1
    assert _metric(text, "citywok_http_requests_total", route="/api/v1/identify", status="400") == 1
    assert _metric(text, "citywok_http_request_duration_seconds_count", route="/api/v1/identify") == 3
    assert _metric(text, "citywok_identify_total", outcome="match") == 1
    assert _metric(text, "citywok_identify_total", outcome="client_error") == 2  # 415 not audio, 400 no file
    assert "_created" not in text, "no *_created series"
    assert _metric(text, "citywok_build_info", version=citywok.__version__) == 1
    assert _metric(text, "process_resident_memory_bytes") > 0
    assert _metric(text, "citywok_decode_seconds_count") == 1
    assert _metric(text, "citywok_match_seconds_count") == 1
    assert _metric(text, "citywok_identify_hashes_looked_up_sum") > 50
    assert _metric(text, "citywok_db_info", version="v1", seasons="1") == 1
    assert _metric(text, "citywok_shard_bytes") > 0
    assert _metric(text, "citywok_swaps_total") == 0
    assert _metric(text, "citywok_ready") == 1


def test_one_json_log_line_per_request_with_request_id(server, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="citywok.access"):
        r = requests.get(f"{server.url}/api/v1/test", headers={"X-Request-Id": "abc-42"}, timeout=5)
        bad = requests.get(f"{server.url}/api/v1/test", headers={"X-Request-Id": "bad id\twith space"}, timeout=5)
    assert r.headers["X-Request-Id"] == "abc-42"
    assert bad.headers["X-Request-Id"] != "bad id\twith space" and len(bad.headers["X-Request-Id"]) == 32
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "citywok.access"]
    mine = [ln for ln in lines if ln["request_id"] == "abc-42"]
    assert len(mine) == 1
    assert mine[0]["status"] == 200 and mine[0]["route"] == "/api/v1/test" and mine[0]["ms"] >= 0



def test_unexpected_error_is_json_500_reported_with_request_id(data_dir) -> None:
    from citywok.matcher.service.server import ServerConfig

    s = ServerThread(ServerConfig(data_dir=data_dir))

    async def boom(request):  # noqa: ANN001, ANN202
        raise RuntimeError("kaboom")

    s.app.router.add_get("/boom", boom)
    reported: list[BaseException] = []
    s.service.report_error = reported.append
    s.start()
    try:
        r = requests.get(f"{s.url}/boom", headers={"X-Request-Id": "req-500"}, timeout=5)
    finally:
        s.stop()
    assert r.status_code == 500
    assert r.json()["error"] == "internal" and "req-500" in r.json()["message"]
    assert "kaboom" not in r.text  # no internals to the client ...
    assert [str(e) for e in reported] == ["kaboom"]  # ... but to Sentry


def test_sentry_is_optional(caplog) -> None:
    import importlib.util

    from citywok.matcher.service.server import ServerConfig, Service, _setup_sentry

    svc = Service(ServerConfig())
    try:
        before = svc.report_error
        _setup_sentry(None, svc)
        assert svc.report_error is before  # no DSN: sentry is not even imported
        with caplog.at_level(logging.WARNING, logger="citywok.server"):
            _setup_sentry("https://key@sentry.invalid/1", svc)
        if importlib.util.find_spec("sentry_sdk") is None:
            assert svc.report_error is before
            assert "sentry-sdk is not installed" in caplog.text
        else:
            import sentry_sdk

            assert svc.report_error is sentry_sdk.capture_exception
    finally:
        svc.close()


def test_seasons_setting_serves_only_those(start_server, data_dir) -> None:
    """ServerConfig.seasons (SEASONS, from a FingerprintDB's spec.seasons) leaves the others unopened."""
    only_1 = start_server(data_dir, seasons=(1, 4))
    assert requests.get(f"{only_1.url}/api/v1/test", timeout=5).json()["seasons"] == [1]
    only_2 = start_server(data_dir, seasons=(2,))
    body = requests.get(f"{only_2.url}/api/v1/test", timeout=5).json()
    assert body["seasons"] == [] and body["episodes"] == 0
    r = requests.post(f"{only_2.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(2, 10.0))},
                      timeout=30)
    assert r.status_code == 200 and r.json()["match"] is False


def test_identify_outcome_names_whose_fault_an_error_is() -> None:
    from citywok.matcher.service.metrics import OUTCOMES, identify_outcome

    assert [identify_outcome(s, c) for s, c in [(400, "bad_request"), (413, "too_large"), (415, "unsupported_media"),
                                                 (422, "too_short")]] == ["client_error"] * 4
    assert identify_outcome(429, "overloaded") == identify_outcome(503, "not_ready") == "refused"
    assert identify_outcome(503, "worker_lost") == identify_outcome(500, "internal") == "server_error"
    assert set(OUTCOMES) == {"match", "no_match", "client_error", "server_error", "refused"}
