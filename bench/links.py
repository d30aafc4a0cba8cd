"""Link benchmark of `citywok serve`: a clip behind a loopback video page, and a compilation's timeline.

    python -m bench.links [--clips 40] [--compilations 5]

Builds a season of synthetic episodes (cached under --data), serves a loopback "video site" from this
process (an HTML page with og:video and a <video> tag, the media as MP3), starts `citywok serve` as a
subprocess allowed to reach that site only (URL_ALLOW_HOSTS=127.0.0.1:PORT), and posts links to it.
Each link carries a query of its own, so every request misses the answer cache and downloads again
(one cached row is printed apart). Figures: the server's own elapsed_ms (download included), its
download_ms, the client's wall time, and the CPU time of the server and its workers per request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from aiohttp import web
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.ingest import write_manifest
from citywok.matcher.store.shard import Shard

from citywok import layout

RATE = DEFAULT_PARAMS.sample_rate
EPISODES = 6
EPISODE_SECONDS = 240.0
SCENE_SECONDS = 30.0  # 6 scenes of 30 s: a 3-minute compilation


def build(data: Path) -> None:
    if layout.current_dir(data) is not None:
        return
    vdir = layout.version_dir(data, "v1")
    with Shard.create(vdir / layout.season_name(1), DEFAULT_PARAMS, 1) as shard:
        for seed in range(1, EPISODES + 1):
            pcm = synth.episode(seed, EPISODE_SECONDS, RATE)
            shard.add_episode(f"S01E{seed:02d}", fingerprint_pcm(pcm), pcm.size / RATE, f"sha-{seed}", None)
    write_manifest(data, "v1")
    layout.flip_current(data, "v1")


def media() -> tuple[bytes, bytes, list[tuple[str, float]]]:
    """The 5 s clip (episode 2 at 61 s) and the compilation (scene k: episode k+1 from 20 + 7k s)."""
    clip = synth.episode(2, EPISODE_SECONDS, RATE)[61 * RATE: 66 * RATE]
    scenes = [(seed, 20.0 + 7 * (seed - 1)) for seed in range(1, EPISODES + 1)]
    comp = np.concatenate([synth.episode(s, EPISODE_SECONDS, RATE)[int(a * RATE): int((a + SCENE_SECONDS) * RATE)]
                           for s, a in scenes])
    return synth.encode(clip, RATE, "mp3"), synth.encode(comp, RATE, "mp3"), [(f"S01E{s:02d}", a) for s, a in scenes]


def serve_site(clip: bytes, comp: bytes) -> int:
    async def page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(content_type="text/html", text=(
            f'<!doctype html><html><head><title>{name}</title><meta property="og:video" content="/m/{name}.mp3">'
            f'</head><body><video src="/m/{name}.mp3"></video></body></html>'))

    async def mp3(request: web.Request) -> web.Response:
        return web.Response(body=clip if request.match_info["name"] == "clip" else comp, content_type="audio/mpeg")

    app = web.Application()
    app.router.add_get("/watch/{name}", page)
    app.router.add_get("/m/{name}.mp3", mp3)
    port = _free_port()
    ready = threading.Event()

    def run() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, site_port: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "DATA_DIR": str(data), "PORT": str(port), "HOST": "127.0.0.1",
           "URL_ALLOW_HOSTS": f"127.0.0.1:{site_port}"}
    citywok = shutil.which("citywok") or str(Path(sys.executable).with_name("citywok"))
    proc = subprocess.Popen([citywok, "serve"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not become ready")


def cpu(proc: psutil.Process) -> float:
    total = sum(proc.cpu_times()[:2])
    for c in proc.children(recursive=True):
        try:
            total += sum(c.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def run(url: str, link: str, n: int, proc: psutil.Process, tag: str) -> list[dict]:
    answers, walls = [], []
    c0 = cpu(proc)
    for i in range(n):
        t0 = time.perf_counter()
        r = requests.post(f"{url}/api/v1/identify", json={"url": f"{link}?n={tag}{i}"}, timeout=60)
        walls.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{link}: HTTP {r.status_code} {r.text}")
        answers.append(r.json())
    per = (cpu(proc) - c0) / n * 1000
    el = [a["elapsed_ms"] for a in answers]
    dl = [a["download_ms"] for a in answers]
    print(f"  server elapsed_ms p50 {statistics.median(el):.1f}  p90 {np.percentile(el, 90):.1f}  "
          f"(download_ms p50 {statistics.median(dl):.1f}); client wall p50 {statistics.median(walls):.1f} ms; "
          f"server+workers CPU {per:.1f} ms per request; n={n}")
    return answers


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/citywok-bench-links"))
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--compilations", type=int, default=5)
    args = ap.parse_args()
    build(args.data)
    clip, comp, scenes = media()
    site = serve_site(clip, comp)
    server, url = start_server(args.data, site)
    try:
        proc = psutil.Process(server.pid)
        print(f"load average {os.getloadavg()[0]:.2f} (2 cores)")
        run(url, f"http://127.0.0.1:{site}/watch/clip", 3, proc, "warm")  # yt-dlp's warm-up, first threads
        print("5 s clip behind a loopback page (target: p50 <= 150 ms):")
        a = run(url, f"http://127.0.0.1:{site}/watch/clip", args.clips, proc, "c")[0]
        print(f"  answer: {a['episode_id']} at {a['offset_seconds']} s (expected S01E02 at 61.0)")
        r = requests.post(f"{url}/api/v1/identify", json={"url": f"http://127.0.0.1:{site}/watch/clip?n=c0"},
                          timeout=60).json()
        print(f"  the same link again: cached={r['cached']}, elapsed_ms {r['elapsed_ms']}")
        print(f"3-minute compilation of {len(scenes)} scenes (target: timeline <= 2000 ms of server time):")
        answers = run(url, f"http://127.0.0.1:{site}/watch/comp", args.compilations, proc, "t")
        print(f"  timeline: {answers[0]['timeline_text']}")
        print("  expected: " + "; ".join(f"{k * SCENE_SECONDS / 60:.1f} min {e} at {a:g} s"
                                         for k, (e, a) in enumerate(scenes)))
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
