"""The drop-a-clip page in headless Chromium, driven over the DevTools protocol (CDP) with aiohttp."""

from __future__ import annotations

import asyncio
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
import pytest

from tests.http.support import clip_bytes

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
async def browser_page(url: str) -> AsyncIterator[Cdp]:
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


async def _drop_clip(page_url: str, clip: Path) -> dict[str, str]:
    async with browser_page(page_url) as cdp:
        await cdp.wait_for("document.getElementById('db').textContent.startsWith('serving')")
        doc = await cdp.send("DOM.getDocument")
        node = await cdp.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": "#file"})
        await cdp.send("DOM.setFileInputFiles", {"files": [str(clip)], "nodeId": node["nodeId"]})
        await cdp.wait_for("document.getElementById('episode').textContent")
        out = await cdp.eval("JSON.stringify({episode: document.getElementById('episode').textContent,"
                             " offset: document.getElementById('offset').textContent,"
                             " headline: document.getElementById('headline').textContent,"
                             " status: document.getElementById('status').textContent})")
        return json.loads(out)


async def _try_docs(docs_url: str) -> dict[str, Any]:
    async with browser_page(docs_url) as cdp:
        await cdp.wait_for("document.querySelectorAll('section.op').length >= 6")
        ops = await cdp.eval("[...document.querySelectorAll('section.op h2')].map(h => h.textContent)")
        await cdp.eval("document.getElementById('get-/api/v1/test').querySelector('button').click()")
        out = await cdp.wait_for("(t => t.startsWith('HTTP') && t)("
                                 "document.getElementById('get-/api/v1/test').querySelector('pre').textContent)")
        return {"ops": ops, "out": out}


@pytest.mark.browser
def test_page_identifies_a_dropped_clip(server, tmp_path: Path) -> None:
    clip = tmp_path / "clip from the tv.mp3"
    clip.write_bytes(clip_bytes(3, 21.0))
    shown = asyncio.run(_drop_clip(f"{server.url}/", clip))
    assert shown["episode"] == "S01E03"
    seconds = float(re.search(r"\(([\d.]+) s\)", shown["offset"]).group(1))
    assert abs(seconds - 21.0) < 0.1
    assert shown["headline"].startswith("S01E03 at 0:2")
    assert shown["status"] == "Found it."


@pytest.mark.browser
def test_docs_page_renders_the_api_and_tries_a_route(server) -> None:
    got = asyncio.run(_try_docs(f"{server.url}/docs"))
    assert "POST /api/v1/identify" in got["ops"] and "POST /api/v1/ingest" in got["ops"]
    assert got["out"].startswith("HTTP 200")
    assert "CityWok API is running (Audio-Only)" in got["out"]
