"""URL identify: the happy path through an allowed loopback host, and the SSRF refusals."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
import requests
from citywok.matcher.service import urlfetch

from tests.http.support import Origin
from tests.support import wait_for


@pytest.fixture
def origin():  # noqa: ANN201
    o = Origin().start()
    yield o
    o.stop()


def _identify_url(server, url: str, as_json: bool = True) -> requests.Response:  # noqa: ANN001
    if as_json:
        return requests.post(f"{server.url}/api/v1/identify", json={"url": url}, timeout=30)
    return requests.post(f"{server.url}/api/v1/identify", data={"url": url}, timeout=30)


def test_url_identify_happy_path_when_loopback_is_allowed(start_server, data_dir, origin) -> None:
    s = start_server(data_dir, url_allow=urlfetch.AllowList.parse("127.0.0.1"))
    for as_json in (True, False):
        r = _identify_url(s, f"{origin.url}/clip.mp3", as_json)
        assert r.status_code == 200, r.text
        assert r.json()["episode_id"] == "S01E02" and abs(r.json()["offset_seconds"] - 9.0) < 0.1
        assert r.json()["source"]["kind"] == "url" and r.json()["source"]["extractor"] == "Generic"
    r = _identify_url(s, f"{origin.url}/redirect?to=/clip.mp3")  # a redirect within the allowed host
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E02"
    assert "citywok_url_download_bytes_total" in requests.get(f"{s.url}/metrics", timeout=5).text


def test_loopback_and_private_addresses_are_refused(server, origin) -> None:
    for url in (f"{origin.url}/clip.mp3", f"http://localhost:{origin.port}/clip.mp3",
                f"http://[::1]:{origin.port}/clip.mp3", "http://10.0.0.7/clip.mp3", "http://192.168.1.1/",
                "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://0.0.0.0:80/",
                "http://[::ffff:127.0.0.1]/"):
        r = _identify_url(server, url)
        assert r.status_code == 403, (url, r.text)
        assert r.json()["error"] == "url_forbidden"
    assert origin.hits == []  # nothing was fetched


def test_redirect_to_a_private_address_is_refused(start_server, data_dir) -> None:
    o = Origin("127.0.0.2").start()  # allowed by address; its redirects lead elsewhere
    try:
        s = start_server(data_dir, url_allow=urlfetch.AllowList.parse("127.0.0.2/32"))
        for target in ("http://10.1.2.3/x.mp3", f"http://localhost:{o.port}/clip.mp3",
                       f"http://127.0.0.1:{o.port}/clip.mp3", "http://169.254.169.254/"):
            r = _identify_url(s, f"{o.url}/redirect?to={target}")
            assert r.status_code == 403, (target, r.text)
            assert r.json()["error"] == "url_forbidden"
        assert o.hits == ["/redirect"] * 4  # only the allowed first hops were fetched
    finally:
        o.stop()


def test_url_download_limits(start_server, data_dir, origin) -> None:
    s = start_server(data_dir, url_allow=urlfetch.AllowList.parse("127.0.0.1"), max_upload_bytes=1 << 20,
                     url_timeout=1.0)
    assert _identify_url(s, f"{origin.url}/huge").status_code == 413
    r = _identify_url(s, f"{origin.url}/slow")
    assert r.status_code == 504 and r.json()["error"] == "url_timeout"
    r = _identify_url(s, f"{origin.url}/missing")
    assert r.status_code == 422 and r.json()["error"] == "video_unavailable" and "404" in r.json()["message"]
    r = _identify_url(s, f"{origin.url}/loop")
    assert r.status_code == 502 and "redirect" in r.json()["message"], r.text
    assert _identify_url(s, f"{origin.url}/text").status_code == 415  # yt-dlp takes it for media; it is not
    assert _identify_url(s, "ftp://example.com/a.mp3").json()["error"] == "bad_url"
    assert _identify_url(s, "http:///nohost").status_code == 400


@pytest.mark.parametrize("addr, forbidden", [
    ("8.8.8.8", False), ("2606:4700::1111", False), ("127.0.0.1", True), ("10.2.3.4", True),
    ("172.16.0.1", True), ("192.168.0.1", True), ("169.254.169.254", True), ("169.254.1.1", True),
    ("fd00:ec2::254", True), ("fe80::1", True), ("224.0.0.1", True), ("240.0.0.1", True), ("::1", True),
    ("::ffff:10.0.0.1", True), ("100.64.0.1", True), ("0.0.0.0", True),
])
def test_forbidden_reason(addr: str, forbidden: bool) -> None:
    assert (urlfetch.forbidden_reason(ipaddress.ip_address(addr)) is not None) == forbidden


def test_resolver_checks_resolved_addresses() -> None:
    async def run() -> None:
        r = urlfetch.CheckingResolver(urlfetch.AllowList())
        with pytest.raises(urlfetch.UrlForbidden, match="loopback"):
            await r.resolve("localhost", 80)
        allowed = urlfetch.CheckingResolver(urlfetch.AllowList.parse(["localhost"]))
        assert (await allowed.resolve("localhost", 80))[0]["host"] in {"127.0.0.1", "::1"}

    asyncio.run(run())


def test_concurrent_downloads_are_bounded(start_server, data_dir, origin) -> None:
    import concurrent.futures as cf

    s = start_server(data_dir, url_allow=urlfetch.AllowList.parse("127.0.0.1"), max_downloads=1, url_timeout=1.5)
    with cf.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(_identify_url, s, f"{origin.url}/slow")
        wait_for(lambda: "/slow" in origin.hits, 5, "the slow download to start", interval=0.01)
        second = _identify_url(s, f"{origin.url}/clip.mp3")
        assert second.status_code == 429 and second.headers["Retry-After"] == "1"
        assert slow.result().status_code == 504
    assert _identify_url(s, f"{origin.url}/clip.mp3").status_code == 200  # the slot was given back
