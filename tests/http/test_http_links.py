"""Links to video pages through yt-dlp: a loopback video site, the SSRF guard on every request, limits,
errors with stable codes, the answer cache, and timelines of compilations."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
import subprocess
import time

import numpy as np
import pytest
import requests
from citywok.matcher.service import urlfetch

from tests.http.videosite import Listener, VideoSite, scene
from tests.support import wait_for

SCENES = [(1, 5.0, 20.0), (2, 10.0, 20.0), (3, 0.0, 20.0)]  # (episode seed, start in it, seconds)
EPISODES = {1: "S01E01", 2: "S01E02", 3: "S01E03"}


@pytest.fixture(scope="module")
def listener():  # noqa: ANN201
    lis = Listener("127.0.0.2")
    yield lis
    lis.close()


@pytest.fixture(scope="module")
def site(listener):  # noqa: ANN001, ANN201
    media = {"clip": scene(2, 9.0, 5.0), "comp": np.concatenate([scene(*s) for s in SCENES])}
    s = VideoSite(listener.url, media).start()
    yield s
    s.stop()


@pytest.fixture
def no_processes(monkeypatch):  # noqa: ANN001, ANN201
    """Fail any attempt to start a process (ffmpeg, a JavaScript runtime) in this test's server."""
    started: list[object] = []

    def refuse(self, args, *a, **k):  # noqa: ANN001, ANN202
        started.append(args)
        raise OSError("no process may be started while a link is served")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    return started


@pytest.fixture
def link_server(start_server, data_dir, site):  # noqa: ANN001, ANN201
    return start_server(data_dir, url_allow=urlfetch.AllowList.parse(f"127.0.0.1:{site.port}"), url_timeout=2.0)


def ask(server, url: str) -> requests.Response:  # noqa: ANN001
    return requests.post(f"{server.url}/api/v1/identify", json={"url": url}, timeout=30)


def test_page_with_og_video_is_identified_with_its_source(link_server, site, no_processes) -> None:
    r = ask(link_server, f"{site.url}/watch/clip")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["episode_id"] == "S01E02" and abs(a["offset_seconds"] - 9.0) < 0.1
    assert a["source"]["kind"] == "url" and a["source"]["title"].startswith("Scene clip")
    assert a["source"]["webpage_url"] == f"{site.url}/watch/clip" and a["source"]["extractor"]
    assert a["cached"] is False and a["timeline"] is None
    assert no_processes == []


def test_start_time_in_the_link_is_honoured(link_server, site) -> None:
    a = ask(link_server, f"{site.url}/watch/clip?t=2").json()
    assert a["source"]["start_seconds"] == 2.0
    assert a["episode_id"] == "S01E02" and abs(a["offset_seconds"] - 11.0) < 0.1


def test_jsonld_page_reports_uploader_and_duration(link_server, site) -> None:
    a = ask(link_server, f"{site.url}/ld/clip").json()
    assert a["episode_id"] == "S01E02"
    assert a["source"]["uploader"] == "Uploader X" and a["source"]["duration"] == 60


def test_hls_playlist_direct_and_behind_a_page(link_server, site, no_processes) -> None:
    for url in (f"{site.url}/hls/clip.m3u8", f"{site.url}/show/clip"):
        r = ask(link_server, url)
        assert r.status_code == 200, (url, r.text)
        assert r.json()["episode_id"] == "S01E02" and abs(r.json()["offset_seconds"] - 9.0) < 0.2
    assert all(site.hits[f"/hls/clip/{i}.ts"] >= 1 for i in range(len(site.segments["clip"])))
    assert no_processes == []


def test_redirect_chain_is_followed(link_server, site) -> None:
    r = ask(link_server, f"{site.url}/r/3")
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E02"
    assert [site.hits[f"/r/{n}"] for n in (3, 2, 1)] == [1, 1, 1]


def test_private_targets_are_refused_and_never_reached(link_server, site, listener) -> None:
    for path in ("/evil", "/evil-hls.m3u8", "/hop"):  # a page's media, a playlist's segments, a redirect
        r = ask(link_server, f"{site.url}{path}")
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"] == "url_forbidden" and "127.0.0.2" in r.json()["message"]
    assert listener.connections == 0


def test_allow_list_entry_with_a_port_allows_that_port_only(start_server, data_dir, site) -> None:
    s = start_server(data_dir, url_allow=urlfetch.AllowList.parse(f"127.0.0.1:{site.port + 1}"))
    before = sum(site.hits.values())
    r = ask(s, f"{site.url}/watch/clip")
    assert r.status_code == 403 and r.json()["error"] == "url_forbidden"
    assert sum(site.hits.values()) == before


def test_slow_site_meets_the_deadline(link_server, site) -> None:
    for path in ("/slow", "/trickle.mp3"):
        t0 = time.monotonic()
        r = ask(link_server, f"{site.url}{path}")
        assert r.status_code == 504 and r.json()["error"] == "url_timeout", (path, r.text)
        assert time.monotonic() - t0 < 5.0
    wait_for(lambda: link_server.service.downloads.admitted == 0, 3, "the download slots given back")
    assert link_server.service.downloads.admitted == 0  # the download threads ended and gave their slots back


@pytest.mark.parametrize("path, status, code", [
    ("/empty", 422, "unsupported_url"), ("/status/401", 422, "login_required"),
    ("/status/410", 422, "video_unavailable"), ("/long", 413, "too_long"),
])
def test_errors_have_stable_codes(link_server, site, path: str, status: int, code: str) -> None:
    r = ask(link_server, f"{site.url}{path}")
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["message"] and "Traceback" not in r.json()["message"]


def test_repeated_link_is_answered_from_the_cache(link_server, site) -> None:
    site.hits.clear()
    first = ask(link_server, f"{site.url}/watch/clip?x=1&utm_source=share")
    assert first.status_code == 200 and first.json()["cached"] is False
    again = ask(link_server, f"{site.url}/watch/clip?utm_medium=app&x=1")
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["episode_id"] == first.json()["episode_id"]
    with cf.ThreadPoolExecutor(6) as pool:  # a new link pasted six times at once: one download
        answers = list(pool.map(lambda _: ask(link_server, f"{site.url}/watch/clip?x=2"), range(6)))
    assert {a.status_code for a in answers} == {200}
    assert site.hits["/media/clip.mp3"] == 2 and site.hits["/watch/clip"] == 2


def test_compilation_is_answered_as_a_timeline(link_server, site) -> None:
    r = ask(link_server, f"{site.url}/watch/comp")
    assert r.status_code == 200, r.text
    a = r.json()
    parts = [p for p in a["timeline"] if p["match"]]
    assert [p["episode_id"] for p in parts] == [EPISODES[s[0]] for s in SCENES], a["timeline_text"]
    assert len(a["timeline"]) == 3
    video_t = 0.0
    for p, (_seed, start, seconds) in zip(parts, SCENES, strict=True):
        assert abs(p["start_seconds"] - video_t) <= 2.5, a["timeline_text"]
        # the offset is the episode time at the stretch's start: on the scene's line, video time -> episode time
        assert abs(p["offset_seconds"] - (start + p["start_seconds"] - video_t)) < 0.2, a["timeline_text"]
        video_t += seconds
    assert a["timeline"][-1]["end_seconds"] == pytest.approx(60.0, abs=0.1)
    assert re.fullmatch(r"0:00-0:\d\d S01E01 at 0:0\d; 0:\d\d-0:\d\d S01E02 at 0:\d\d; 0:\d\d-1:00 S01E03 at 0:0\d",
                        a["timeline_text"]), a["timeline_text"]


def test_uploaded_compilation_gets_a_timeline_too(link_server, site) -> None:
    body = site.media["comp"]
    r = requests.post(f"{link_server.url}/api/v1/identify", files={"file": ("comp.mp3", body)}, timeout=30)
    assert r.status_code == 200, r.text
    assert [p["episode_id"] for p in r.json()["timeline"] if p["match"]] == ["S01E01", "S01E02", "S01E03"]
    assert r.json()["source"]["kind"] == "upload" and r.json()["source"]["url"] is None


def _cli(data_dir, site, *args: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    import os
    import sys
    from pathlib import Path

    env = {**os.environ, "DATA_DIR": str(data_dir), "URL_ALLOW_HOSTS": f"127.0.0.1:{site.port}", "URL_TIMEOUT": "5"}
    exe = Path(sys.executable).with_name("citywok")
    return subprocess.run([str(exe), "identify", *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_identifies_a_link_and_a_compilation(data_dir, site) -> None:
    r = _cli(data_dir, site, f"{site.url}/watch/clip")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("from: Scene clip")
    assert re.search(r"^S01E02, season 1, at 0:0(8\.9|9\.0)", r.stdout, re.M), r.stdout
    r = _cli(data_dir, site, f"{site.url}/watch/comp")
    assert r.returncode == 0, r.stderr
    assert re.search(r"timeline of 1:00: 0:00-0:\d\d S01E01 at 0:0\d; .* S01E02 .* S01E03 at 0:0\d", r.stdout), r.stdout
    r = _cli(data_dir, site, f"{site.url}/watch/comp", "--json")
    assert [p["episode_id"] for p in json.loads(r.stdout)["timeline"]] == ["S01E01", "S01E02", "S01E03"]


def test_cli_link_errors_say_what_and_the_code(data_dir, site, listener) -> None:
    for path, code in (("/empty", "unsupported_url"), ("/evil", "url_forbidden"), ("/status/401", "login_required")):
        r = _cli(data_dir, site, f"{site.url}{path}")
        assert r.returncode == 2 and f"[{code}]" in r.stderr, (path, r.stderr)
        assert "Traceback" not in r.stderr
    assert listener.connections == 0


def test_openapi_describes_links_and_timelines(link_server) -> None:
    spec = requests.get(f"{link_server.url}/api/v1/openapi.json", timeout=5).json()
    props = spec["components"]["schemas"]["Identification"]["properties"]
    assert props["source"]["$ref"] == "#/components/schemas/SourceInfo" and "uploader" in props["source"]["description"]
    assert props["timeline"]["items"] == {"$ref": "#/components/schemas/Stretch"}
    assert {"SourceInfo", "Stretch"} <= set(spec["components"]["schemas"])
    assert "uploader" in spec["components"]["schemas"]["SourceInfo"]["properties"]
    responses = spec["paths"]["/api/v1/identify"]["post"]["responses"]
    for status, code in (("422", "login_required"), ("422", "video_unavailable"), ("413", "too_long"),
                         ("415", "no_audio"), ("422", "unsupported_url"), ("504", "url_timeout")):
        assert code in responses[status]["description"]


async def _paste(page_url: str, links: list[str]) -> list[dict]:
    from tests.http.test_http_browser import browser_page

    shown = []
    async with browser_page(page_url) as cdp:
        await cdp.wait_for("document.getElementById('db').textContent.startsWith('serving')")
        for link in links:
            await cdp.eval("document.getElementById('status').textContent = ''")
            await cdp.eval(f"document.getElementById('url').value = {json.dumps(link)};"
                           "document.getElementById('url-form').requestSubmit()")
            await cdp.wait_for("(s => s && !s.endsWith('…'))(document.getElementById('status').textContent)", 40)
            out = await cdp.eval("JSON.stringify({status: document.getElementById('status').textContent,"
                                 " headline: document.getElementById('headline').textContent,"
                                 " source: document.getElementById('source').textContent,"
                                 " parts: [...document.querySelectorAll('#timeline li')].map(li => li.textContent)})")
            shown.append(json.loads(out))
    return shown


@pytest.mark.browser
def test_page_shows_a_links_timeline_source_and_errors(link_server, site) -> None:
    import asyncio

    comp, gone = asyncio.run(_paste(f"{link_server.url}/", [f"{site.url}/watch/comp", f"{site.url}/status/401"]))
    assert comp["headline"] == "Timeline: 3 of 3 stretches matched", comp
    assert [p.split(" ")[1] for p in comp["parts"]] == ["S01E01", "S01E02", "S01E03"]
    assert comp["parts"][0].startswith("0:00-0:") and " at 0:0" in comp["parts"][0]
    assert comp["source"].startswith("From: Scene comp")
    assert gone["status"].endswith("[login_required]"), gone
