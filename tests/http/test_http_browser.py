"""The drop-a-clip page in headless Chromium, driven over the DevTools protocol (CDP) with aiohttp."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from citywok.matcher import synth

from tests.http.support import RATE, build_version, clip_bytes, episode_pcm

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Cdp:
    """A minimal CDP client: one page session over the browser's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = msg.json()
            fut = self.pending.pop(data.get("id"), None)
            if fut is not None:
                fut.set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, params: dict | None = None, session: bool = True) -> dict[str, Any]:
        i = next(self.ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        await self.ws.send_json(msg)
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def eval(self, expr: str) -> Any:
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return r["result"].get("value")

    async def wait_for(self, expr: str, timeout: float = 20) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.eval(expr)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expr}")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def browser_page(url: str, device: dict[str, Any] | None = None) -> AsyncIterator[Cdp]:
    """Headless Chromium with a fresh profile, one page loaded at ``url``; killed afterwards."""
    profile = tempfile.mkdtemp(prefix="citywok-chromium-")
    proc = await asyncio.create_subprocess_exec(CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank",
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ws_url = None
        while ws_url is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert line, "chromium exited before its DevTools endpoint was up"
            m = re.search(rb"DevTools listening on (ws://\S+)", line)
            if m:
                ws_url = m.group(1).decode()
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            cdp = Cdp(ws)
            target = await cdp.send("Target.createTarget", {"url": "about:blank"})
            attached = await cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
            cdp.session = attached["sessionId"]
            await cdp.send("Page.enable")
            await cdp.send("Runtime.enable")
            if device:
                await cdp.send("Emulation.setDeviceMetricsOverride", device)
            await cdp.send("Page.navigate", {"url": url})
            await cdp.wait_for("document.readyState === 'complete'")
            try:
                yield cdp
            finally:
                cdp.reader.cancel()
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
SHOTS = Path(__file__).parents[2] / "build" / "screenshots"  # kept for people to look at (not in git)


async def _screenshot(cdp: Cdp, name: str) -> Path:
    shot = await cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


async def _drop_clip(page_url: str, clip: Path, phone: bool = False, shot: str | None = None) -> dict[str, Any]:
    async with browser_page(page_url, PHONE if phone else None) as cdp:
        await cdp.wait_for("document.getElementById('db').textContent.startsWith('serving')")
        doc = await cdp.send("DOM.getDocument")
        node = await cdp.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": "#file"})
        await cdp.send("DOM.setFileInputFiles", {"files": [str(clip)], "nodeId": node["nodeId"]})
        await cdp.wait_for("document.getElementById('episode').textContent")
        out = await cdp.eval("JSON.stringify({episode: document.getElementById('episode').textContent,"
                             " title: document.getElementById('title').textContent,"
                             " offset: document.getElementById('offset').textContent,"
                             " headline: document.getElementById('headline').textContent,"
                             " status: document.getElementById('status').textContent,"
                             " scale: document.getElementById('scale').hidden ? null"
                             "   : document.getElementById('scale').textContent,"
                             " runners: [...document.querySelectorAll('#runners li')].map(li => li.textContent),"
                             " db: document.getElementById('db').textContent,"
                             " help: document.getElementById('url-help').textContent,"
                             " width: document.documentElement.scrollWidth})")
        got = json.loads(out)
        if shot:
            got["png"] = str(await _screenshot(cdp, shot))
        return got


async def _try_docs(docs_url: str) -> dict[str, Any]:
    async with browser_page(docs_url) as cdp:
        await cdp.wait_for("document.querySelectorAll('.opblock').length >= 7")
        ops = await cdp.eval("[...document.querySelectorAll('.opblock-summary')].map(s => "
                             "s.querySelector('.opblock-summary-method').textContent + ' ' + "
                             "s.querySelector('.opblock-summary-path').textContent.replace(/\u200b/g, ''))")
        await cdp.eval("document.querySelector('#operations-status-apiTest .opblock-summary-control').click()")
        await cdp.wait_for("!!document.querySelector('#operations-status-apiTest .execute')")
        # Swagger UI resolves an expanded operation's $refs after drawing its Execute button; a click before that
        # is dropped (OperationNotFoundError in the console) and the operation stays without an answer
        await cdp.wait_for("(o => !!o && !!o.get('operationId'))(window.ui.specSelectors"
                           ".specResolvedSubtree(['paths', '/api/v1/test', 'get']))")
        await cdp.eval("document.querySelector('#operations-status-apiTest .execute').click()")
        out = await cdp.wait_for("(e => e && e.textContent)(document.querySelector("
                                 "'#operations-status-apiTest .responses-table.live-responses-table'))")
        curl = await cdp.eval("(e => e && e.textContent)(document.querySelector('#operations-status-apiTest .curl'))")
        await _screenshot(cdp, "docs.png")
        return {"ops": ops, "out": out, "curl": curl}


@pytest.mark.browser
def test_page_identifies_a_dropped_clip(server, tmp_path: Path) -> None:
    clip = tmp_path / "clip from the tv.mp3"
    clip.write_bytes(clip_bytes(3, 21.0))
    shown = asyncio.run(_drop_clip(f"{server.url}/", clip, shot="page-desktop.png"))
    assert shown["episode"] == "S01E03" and shown["title"] == "(no title)"
    assert shown["offset"].startswith("0:2") and shown["offset"].count(":") == 1  # the offset, once, as m:ss.ss
    assert abs(float(shown["offset"].replace("0:", "")) - 21.0) < 0.1
    assert shown["headline"].startswith("S01E03 at 0:2")
    assert shown["status"] == "Found it." and shown["scale"] is None
    assert shown["db"] == "serving v1: 3 episodes in 1 season, 0.0 h"


@pytest.mark.browser
def test_page_says_how_a_clip_was_sped_up(server, tmp_path: Path) -> None:
    x = episode_pcm(2)[int(14.0 * RATE): int((14.0 + 6 * 1.2) * RATE)]
    clip = tmp_path / "sped up.mp3"
    clip.write_bytes(synth.encode(synth.rescale(x, RATE, speed=1.2), RATE, "mp3"))
    shown = asyncio.run(_drop_clip(f"{server.url}/", clip))
    assert shown["episode"] == "S01E02"
    assert abs(float(shown["offset"].replace("0:", "")) - 14.0) < 0.1
    assert shown["scale"] in ("sped up 1.19x", "sped up 1.20x", "sped up 1.21x")


@pytest.mark.browser
def test_page_on_a_phone_shows_titles_runner_ups_and_a_speed_change(start_server, tmp_path: Path) -> None:
    """390 px wide: nothing wider than the screen; the title, the runner-ups and the clip's speed change shown."""
    data = tmp_path / "data"
    build_version(data, "v1", {1: "S01E01", 2: "S01E02", 3: "S01E03"},
                  titles={1: "Grand Opening", 2: "The Long Night", 3: "Kitchen Fire"})
    # S01E04 holds three seconds of the clip's audio (a reused cue): the clip's runner-up
    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.store.ingest import write_manifest
    from citywok.matcher.store.shard import Shard

    from citywok import layout

    other = episode_pcm(5)[: 10 * RATE]
    cue = np.concatenate([other, episode_pcm(3)[20 * RATE: 23 * RATE], other])
    with Shard.open(layout.version_dir(data, "v1") / layout.season_name(1), writable=True) as shard:
        shard.add_episode("S01E04", fingerprint_pcm(cue), cue.size / RATE, "sha-cue", "Delivery")
    write_manifest(data, "v1")
    server = start_server(data)
    x = episode_pcm(3)[int(20 * RATE): int(27 * RATE)]
    fast = np.interp(np.arange(0, x.size - 1, 1.03), np.arange(x.size), x).astype(np.float32)  # played at 103 %
    clip = tmp_path / "sped-up.mp3"
    clip.write_bytes(synth.encode(fast, RATE, "mp3"))
    shown = asyncio.run(_drop_clip(f"{server.url}/", clip, phone=True, shot="page-phone.png"))
    assert shown["width"] <= 390, shown["width"]
    assert shown["headline"].startswith("S01E03 “Kitchen Fire” at ") and shown["title"] == "Kitchen Fire"
    assert abs(float(shown["offset"].replace("0:", "")) - 20.0) < 0.2
    assert shown["scale"] == "sped up 1.03x"
    assert shown["runners"] and shown["runners"][0].startswith("S01E04 “Delivery”, season 1, at 0:")
    assert abs(float(re.search(r"at 0:(\d+\.\d+)", shown["runners"][0]).group(1)) - 10.0) < 0.1  # where the cue is
    assert "straight to an audio or video file" in shown["help"]
    assert Path(shown["png"]).stat().st_size > 10_000


@pytest.mark.browser
def test_docs_page_renders_the_api_and_tries_a_route(server) -> None:
    got = asyncio.run(_try_docs(f"{server.url}/docs"))
    assert "POST /api/v1/identify" in got["ops"] and "POST /api/v1/ingest" in got["ops"]
    assert "GET /api/v1/stats" in got["ops"]
    assert "CityWok API is running (Audio-Only)" in got["out"] and "200" in got["out"]
    assert got["curl"] and "curl -X 'GET'" in got["curl"]
