"""Faults and fuzzing against a real `citywok serve`, `citywok ingest` and shard files (issue 19's targets).

    python -m bench.faults [--fuzz 10000] [--kills 50] [--uploads 100] [--upload-mb 10]

Prints, one block each:
  fuzz        generated bad requests (tests/http/badrequests.py): statuses, 5xx, server crashes
  decode      SDP, concat and playlist uploads: status, seconds, UDP sockets the server held meanwhile
  memory      RSS of server + workers under N concurrent uploads, peak and after
  damage      shard files truncated while serving: server alive, good season answering, SIGBUS count
  kills       kill -9 of the server (HTTP ingest) and of `citywok ingest`, mixed: acknowledged ingests lost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil
import requests
from citywok.matcher import synth
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.shard import Shard
from hypothesis import HealthCheck, given, settings

from citywok import layout
from tests.http.badrequests import TOKEN, Raw, bad_requests, send
from tests.http.procserver import ServeProcess
from tests.http.support import SEASON1, build_version, clip_bytes, episode_pcm

RATE = DEFAULT_PARAMS.sample_rate


def _rss(server: ServeProcess) -> int:
    total = 0
    for pid in server.pids():
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def fuzz(data: Path, n: int) -> None:
    statuses: Counter = Counter()
    crashes = 0
    with ServeProcess(data, INGEST_TOKEN=TOKEN, MAX_QUEUE="64", MAX_QUEUE_WAIT="30") as s:

        @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(raw=bad_requests())
        def one(raw: Raw) -> None:
            nonlocal crashes
            statuses[send(s.port, raw)] += 1
            if s.proc.poll() is not None:
                crashes += 1
                s.start()

        t0 = time.monotonic()
        one()
        took = time.monotonic() - t0
        tracebacks = s.log().count("Traceback")
    fivexx = sum(c for k, c in statuses.items() if k is not None and k >= 500)
    print(f"fuzz: {sum(statuses.values())} generated bad requests in {took:.0f} s: {crashes} crashes, {fivexx} 5xx, "
          f"{tracebacks} tracebacks logged; statuses {dict(sorted(statuses.items(), key=lambda kv: str(kv[0])))}")


def _udp_ports(server: ServeProcess) -> set[int]:
    out = set()
    for pid in server.pids():
        try:
            out |= {c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp")}
        except psutil.Error:
            pass
    return out


def decode_guard(data: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
    bodies = {
        "sdp": (f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode(),
        "ffconcat": b"ffconcat version 1.0\nfile '/etc/hostname'\n",
        "m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n",
    }
    with ServeProcess(data) as s:
        seen: set[int] = set()
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                seen.update(_udp_ports(s))

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        rows = []
        for name, body in bodies.items():
            t0 = time.monotonic()
            r = requests.post(f"{s.url}/api/v1/identify", files={"file": (f"x.{name}", body)}, timeout=60)
            rows.append(f"{name} {r.status_code} in {time.monotonic() - t0:.3f} s")
        stop.set()
        t.join(5)
    print(f"decode: {'; '.join(rows)}; UDP ports held by the server meanwhile: {sorted(seen) or 'none'}"
          f" (the SDP named {port})")


async def _uploads(url: str, n: int, body: bytes) -> Counter:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def one() -> int | str:
            form = aiohttp.FormData()
            form.add_field("file", body, filename="big.wav", content_type="audio/wav")
            try:
                async with session.post(f"{url}/api/v1/identify", data=form) as r:
                    await r.read()
                    return r.status
            except aiohttp.ClientError as e:
                return type(e).__name__
        return Counter(await asyncio.gather(*(one() for _ in range(n))))


def memory(data: Path, n: int, mb: int) -> None:
    rng = random.Random(0)
    body = synth.encode(synth.episode(1, 5.0, RATE), RATE, "wav")
    body = body + bytes(rng.getrandbits(8) for _ in range(1024)) * ((mb << 20) // 1024)
    with ServeProcess(data) as s:
        requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 10.0))}, timeout=30)
        before = _rss(s)
        peak = before
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss(s))
                time.sleep(0.02)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        statuses = asyncio.run(_uploads(s.url, n, body))
        time.sleep(2.0)
        stop.set()
        t.join(5)
        after = _rss(s)
    print(f"memory: {n} concurrent {len(body) / 1e6:.1f} MB uploads: RSS of server + workers {before / 1e6:.0f} MB "
          f"before, {peak / 1e6:.0f} MB peak, {after / 1e6:.0f} MB 2 s after; statuses {dict(statuses)}")


def damage(data: Path) -> None:
    sizes = [0, 4096, 8192, 12288, 20000]
    rows, alive = [], 0
    for size in sizes:
        case = data.with_name(f"damage-{size}")
        shutil.copytree(data, case, symlinks=True)
        with ServeProcess(case) as s:
            f = layout.version_dir(case, "v1") / layout.season_name(2) / layout.DATA_FILE
            with open(f, "r+b") as fh:
                fh.truncate(size)
            got = [requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(seed, 12.0))},
                                 timeout=30) for seed in (1, 2, 3)]
            ok = [r.status_code == 200 and r.json().get("episode_id") == f"S01E0{seed}"
                  for r, seed in zip(got, (1, 2, 3), strict=True)]
            alive += s.proc.poll() is None
            sigbus = s.log().count("died") + s.log().count("worker_lost")
            rows.append(f"{size} B: {sum(ok)}/3 season-1 clips answered, worker deaths {sigbus}")
        shutil.rmtree(case)
    print(f"damage: season 2 truncated while serving, {alive}/{len(sizes)} servers alive: " + "; ".join(rows))


def _episode_file(folder: Path, seed: int) -> Path:
    p = folder / f"S01E{seed:02d}.flac"
    if not p.exists():
        p.write_bytes(synth.encode(episode_pcm(seed, 12.0), RATE, "flac"))
    return p


def _kill(server: ServeProcess, cli: subprocess.Popen | None) -> None:
    """SIGKILL the CLI ingest's process group when there is one, else the server's."""
    if cli is None:
        server.kill()
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cli.pid, 9)


def kills(data: Path, rounds: int) -> None:
    """Half the rounds kill -9 the server while it ingests over HTTP, half kill a CLI ingest running
    beside the server's HTTP ingests; afterwards every acknowledged episode must be in the shard."""
    rng = random.Random(19)
    files = data.with_name("kill-episodes")
    files.mkdir(exist_ok=True)
    acked: set[str] = set()
    exe = str(Path(sys.executable).with_name("citywok"))
    seed = 10
    for i in range(rounds):
        s = ServeProcess(data, INGEST_TOKEN=TOKEN).start()
        cli, batch = None, []
        if i % 2:
            batch = [_episode_file(files, seed + k) for k in range(3)]
            seed += 3
            cli = subprocess.Popen([exe, "ingest", *map(str, batch), "--season", "1", "--no-progress"],
                                   env={**os.environ, "DATA_DIR": str(data)}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        eid = f"S01E{seed:02d}"
        body = synth.encode(episode_pcm(seed, 12.0), RATE, "flac")
        seed += 1
        killer = threading.Timer(rng.uniform(0.05, 1.5), _kill, (s, cli))
        killer.start()
        try:
            r = requests.post(f"{s.url}/api/v1/ingest", data={"episode_id": eid, "season": "1"},
                              files={"file": ("e.flac", body)}, headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=60)
            if r.status_code in (200, 201):
                acked.add(eid)
        except requests.RequestException:
            pass
        killer.join()
        if cli is not None and cli.wait(60) == 0:  # finished before its kill: it reported them in
            acked.update(p.stem for p in batch)
        s.kill()
    with Shard.open(layout.version_dir(data, "v1") / layout.season_name(1)) as shard:
        stored = {e.id for e in shard.episodes()}
    lost = sorted(acked - stored)
    with ServeProcess(data) as s:
        sample = sorted(acked)[:5]
        found = []
        for e in sample:
            n = int(e[4:])
            r = requests.post(f"{s.url}/api/v1/identify", files={"file": ("c.mp3", synth.encode(
                episode_pcm(n, 12.0)[3 * RATE: 8 * RATE], RATE, "mp3"))}, timeout=30)
            found.append(r.json().get("episode_id") == e)
    print(f"kills: {rounds} kill -9 points (server during HTTP ingest, CLI ingest beside it): {len(acked)} ingests "
          f"acknowledged, {len(lost)} lost {lost or ''}; {sum(found)}/{len(found)} acknowledged episodes identified "
          f"after a restart")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--upload-mb", type=int, default=10)
    ap.add_argument("--only", choices=["fuzz", "decode", "memory", "damage", "kills"], action="append")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="citywok-faults-") as tmp:
        data = Path(tmp) / "data"
        build_version(data, "v1", {4: "S02E01"}, season=2, flip=False)
        build_version(data, "v1", SEASON1)
        steps = {"fuzz": lambda: fuzz(data, args.fuzz), "decode": lambda: decode_guard(data),
                 "memory": lambda: memory(data, args.uploads, args.upload_mb), "damage": lambda: damage(data),
                 "kills": lambda: kills(data, args.kills)}
        for name, step in steps.items():
            if not args.only or name in args.only:
                step()


if __name__ == "__main__":
    main()
