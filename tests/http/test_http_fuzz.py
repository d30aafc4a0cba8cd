"""Bad requests against a real `citywok serve`: each a 4xx, never a 5xx, never a crash.

The named cases are the inputs that were 500s; the generated ones (hypothesis, a few hundred per
run) bend every part a client controls. `python -m bench.faults` runs the same generator 10,000 times.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.http.badrequests import TOKEN, Raw, bad_requests, send, wav_header
from tests.http.procserver import ServeProcess
from tests.http.support import SEASON1, build_version

B = b"b0undary"


def _post(route: str, ctype: bytes, body: bytes, token: bytes | None = None) -> Raw:
    head = [b"POST " + route.encode() + b" HTTP/1.1", b"Host: x", b"Connection: close", b"Content-Type: " + ctype,
            b"Content-Length: " + str(len(body)).encode()]
    if token is not None:
        head.append(b"Authorization: Bearer " + token)
    return Raw(b"\r\n".join(head) + b"\r\n\r\n" + body, route)


def _form(*parts: bytes, boundary: bytes = B, close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


URL_PART = b'Content-Disposition: form-data; name="url"\r\n\r\nhttp://127.0.0.1/a.mp3'
FILE_PART = b'Content-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n'
MP = b"multipart/form-data; boundary=" + B
ID = "/api/v1/identify"
ING = "/api/v1/ingest"


def _nested(depth: int) -> bytes:
    body = b"x"
    for i in range(depth):
        b = b"n%d" % i
        body = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n" + body + b"\r\n--" + b
                + b"--")
    return _form(b'Content-Disposition: form-data; name="file"\r\n' + body)


def _ingest_form(season: bytes = b"1", eid: bytes = b"S01E09") -> bytes:
    return _form(b'Content-Disposition: form-data; name="episode_id"\r\n\r\n' + eid,
                 b'Content-Disposition: form-data; name="season"\r\n\r\n' + season,
                 FILE_PART + b"RIFF....")


NAMED = {
    "no boundary": _post(ID, b"multipart/form-data", _form(URL_PART)),
    "empty boundary": _post(ID, b"multipart/form-data; boundary=", _form(URL_PART, boundary=b"")),
    "long boundary": _post(ID, b"multipart/form-data; boundary=" + b"x" * 5000, _form(URL_PART, boundary=b"x" * 5000)),
    "mismatched boundary": _post(ID, MP, _form(URL_PART, boundary=b"other")),
    "quoted odd boundary": _post(ID, b'multipart/form-data; boundary="a b"', _form(URL_PART, boundary=b"a b")),
    "truncated body": _post(ID, MP, _form(FILE_PART + b"RIFF", close=False)[:-3]),
    "no closing boundary": _post(ID, MP, _form(URL_PART, close=False)),
    "only a preamble": _post(ID, MP, b"hello"),
    "long part header": _post(ID, MP, _form(b"X-Long: " + b"a" * 70000 + b"\r\n" + URL_PART)),
    "header without colon": _post(ID, MP, _form(b"garbage line\r\n" + URL_PART)),
    "nested 3": _post(ID, MP, _nested(3)),
    "nested 200": _post(ID, MP, _nested(200)),
    "url unknown charset": _post(ID, MP, _form(b"Content-Type: text/plain; charset=x-nope\r\n" + URL_PART)),
    "url unknown transfer encoding": _post(ID, MP, _form(b"Content-Transfer-Encoding: x-weird\r\n" + URL_PART)),
    "url bad base64": _post(ID, MP, _form(b"Content-Transfer-Encoding: base64\r\n" + URL_PART)),
    "url utf-16 garbage": _post(ID, MP, _form(b"Content-Type: text/plain; charset=utf-16\r\n" + URL_PART + b"\xff")),
    "json unknown charset": _post(ID, b"application/json; charset=x-nope", b'{"url": "http://x/"}'),
    "json nested 2000": _post(ID, b"application/json", b"[" * 2000 + b"]" * 2000),
    "json objects nested 5000": _post(ID, b"application/json", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    "json bad utf-16": _post(ID, b"application/json; charset=utf-16", b'{"u\xff'),
    "form unknown charset": _post(ID, b"application/x-www-form-urlencoded; charset=x-nope", b"url=http%3A%2F%2Fx"),
    "form bad percent bytes": _post(ID, b"application/x-www-form-urlencoded", b"url=%ff%fe"),
    "bearer non-ascii": _post(ING, MP, _ingest_form(), "tökén".encode()),
    "bearer raw bytes": _post(ING, MP, _ingest_form(), b"\xff\xfe\x80"),
    "ingest unknown charset": _post(ING, MP + b"; charset=x-nope", _ingest_form(), TOKEN.encode()),
    "ingest mismatched boundary": _post(ING, MP, _ingest_form().replace(B, b"zz"), TOKEN.encode()),
    "ingest arabic-indic season": _post(ING, MP, _ingest_form("١".encode()), TOKEN.encode()),
    "ingest season 1_0": _post(ING, MP, _ingest_form(b"1_0"), TOKEN.encode()),
    "ingest fullwidth id": _post(ING, MP, _ingest_form(eid="Ｓ01E01".encode()), TOKEN.encode()),
    "wav 255 channels": _post(ID, MP, _form(FILE_PART + wav_header(255, 8000, 16, 2000))),
    "wav 2 GHz": _post(ID, MP, _form(FILE_PART + wav_header(1, 2_000_000_000, 16, 4000))),
    "wav 0 channels": _post(ID, MP, _form(FILE_PART + wav_header(0, 8000, 16, 100))),
    "raw 255 channels": _post(ID, b"audio/wav", wav_header(255, 44100, 16, 1000)),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("fuzz") / "data"
    build_version(d, "v1", SEASON1)
    with ServeProcess(d, INGEST_TOKEN=TOKEN, WORKERS="1", MAX_QUEUE="64", MAX_QUEUE_WAIT="30") as s:
        yield s
        assert s.proc.poll() is None, "the server died"
        assert "Traceback" not in s.log() and '"status": 500' not in s.log(), s.log()[-3000:]


@pytest.mark.parametrize("name", list(NAMED))
def test_named_bad_inputs_are_4xx(server: ServeProcess, name: str) -> None:
    status = send(server.port, NAMED[name])
    assert status is not None and 400 <= status < 500, (name, status)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=bad_requests())
def test_generated_bad_requests_are_never_5xx(server: ServeProcess, raw: Raw) -> None:
    status = send(server.port, raw)
    assert status is None or status < 500, (raw.kind, status, raw.data[:300])
    assert server.proc.poll() is None
