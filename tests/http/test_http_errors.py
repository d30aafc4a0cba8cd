"""One exception base: every exception class of the package is a CityWokError with a status and a stable
code, and the service's middleware answers any of them by looking those up."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from citywok.matcher.engine.decode import DecodeError
from citywok.matcher.service import server
from citywok.matcher.service.admission import Overloaded
from citywok.matcher.service.routes import ApiError

import citywok
from citywok.errors import CityWokError
from citywok.lmdbfile import LmdbFileError

CODE_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _exception_classes() -> list[type[BaseException]]:
    found = []
    parts = [importlib.import_module(f"citywok.{p}") for p in ("matcher", "fetcher", "operator")]
    infos = [i for pkg in (citywok, *parts) for i in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for info in infos:
        if info.name.endswith("__main__"):
            continue
        mod = importlib.import_module(info.name)
        found += [c for _, c in inspect.getmembers(mod, inspect.isclass)
                  if issubclass(c, BaseException) and c.__module__ == info.name]
    return found


def test_every_exception_is_a_citywok_error_with_a_unique_name() -> None:
    classes = _exception_classes()
    assert len(classes) >= 30
    assert [c.__qualname__ for c in classes if not issubclass(c, CityWokError)] == []
    names = [c.__name__ for c in classes]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    for c in classes:
        assert issubclass(c, CityWokError)
        assert 400 <= c.status < 600 and CODE_RE.match(c.code), c


@pytest.fixture
def service(tmp_path: Path):
    svc = server.Service(server.ServerConfig(data_dir=tmp_path, workers=0, max_concurrency=1))
    reported: list[BaseException] = []
    svc.report_error = reported.append
    yield svc, reported
    svc.close()


def _answer(svc: server.Service, e: Exception) -> tuple[int, dict[str, str], dict[str, str], str]:
    request = make_mocked_request("POST", "/api/v1/identify")
    resp, logged = server._failure(e, request, svc, "r1")
    return resp.status, json.loads(resp.body), dict(resp.headers), logged


def test_middleware_looks_up_status_code_and_headers(service) -> None:
    svc, reported = service
    status, body, headers, logged = _answer(svc, Overloaded())
    assert (status, body["error"], headers["Retry-After"]) == (429, "overloaded", "1")
    assert body["message"] == logged == "the server is at capacity; retry in a moment"
    status, body, _, _ = _answer(svc, DecodeError("no stream"))
    assert (status, body) == (415, {"error": "unsupported_media",
                                    "message": "the clip is not decodable as audio: no stream"})
    status, body, headers, _ = _answer(svc, ApiError(401, "unauthorized", "no token", {"WWW-Authenticate": "Bearer"}))
    assert (status, body["error"], headers["WWW-Authenticate"]) == (401, "unauthorized", "Bearer")
    assert reported == []


@pytest.mark.parametrize("error", [LmdbFileError("torn page 7"), ValueError("a bug")])
def test_a_failure_the_server_did_not_explain_is_internal(service, error: Exception) -> None:
    svc, reported = service
    status, body, _, logged = _answer(svc, error)
    assert (status, body) == (500, {"error": "internal", "message": "internal error (request id r1)"})
    assert "torn page" not in body["message"] and logged == repr(error) and reported == [error]
