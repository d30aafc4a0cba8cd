"""Load benchmark of `citywok serve`: prints throughput, server-time percentiles, 429 share, RSS, startup and swaps.

    python -m bench.load [--data /tmp/citywok-bench-load] [--rate 100] [--seconds 20] [--swaps 20]

Builds (once, cached) ~10 h of synthetic episodes at 8 kHz spread over 20 season shards, in two
versions (v1, v2) for hot swaps; starts the server as a subprocess on loopback; this process is the
load generator (open loop: requests leave on schedule whether or not earlier ones returned, up to
an in-flight bound). Every figure printed is measured here; nothing is estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from citywok.matcher import synth
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.ingest import write_manifest
from citywok.matcher.store.shard import FORMAT_VERSION as SHARD_FORMAT
from citywok.matcher.store.shard import Shard, compact

from citywok import layout

RATE = DEFAULT_PARAMS.sample_rate
SEASONS = 20
EPISODES_PER_SEASON = 2
EPISODE_SECONDS = 900.0  # 20 x 2 x 15 min = 10 h
CLIP_SECONDS = 5.0
MAX_IN_FLIGHT = 256
CLIENTS = 4  # closed-loop clients: the server's default admits 2 running + 4 waiting


# -- the data set --------------------------------------------------------------------------------


def _seed(season: int, ep: int) -> int:
    return 1000 + season * 100 + ep


def _fingerprint(seed: int) -> tuple[int, object, float]:
    pcm = synth.episode(seed, EPISODE_SECONDS, RATE)
    return seed, fingerprint_pcm(pcm), pcm.size / RATE


def build_data(data_dir: Path) -> None:
    """20 season shards of generated episodes in v1, copied to v2; cached across runs by a marker file."""
    marker = data_dir / (f".built-{SEASONS}x{EPISODES_PER_SEASON}x{int(EPISODE_SECONDS)}-{DEFAULT_PARAMS.digest()}"
                         f"-shard{SHARD_FORMAT}")
    if marker.exists():
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    vdir = layout.version_dir(data_dir, "v1")
    vdir.mkdir(parents=True)
    jobs = [(s, e) for s in range(1, SEASONS + 1) for e in range(1, EPISODES_PER_SEASON + 1)]
    t0 = time.monotonic()
    shards = {s: Shard.create(vdir / layout.season_name(s), DEFAULT_PARAMS, s) for s in range(1, SEASONS + 1)}
    by_seed = {_seed(s, e): (s, e) for s, e in jobs}
    try:
        with ProcessPoolExecutor(max_workers=2) as pool:
            for n, (seed, hashes, seconds) in enumerate(pool.map(_fingerprint, list(by_seed)), 1):
                s, e = by_seed[seed]
                shards[s].add_episode(f"S{s:02d}E{e:02d}", hashes, seconds, f"synth-{seed}")
                print(f"  built {n}/{len(jobs)} episodes ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    finally:
        for sh in shards.values():
            sh.close()
    for sh in shards.values():
        compact(sh.path)  # as `citywok ingest` leaves a season
    write_manifest(data_dir, "v1")
    shutil.copytree(vdir, layout.version_dir(data_dir, "v2"))
    m = layout.read_manifest(layout.version_dir(data_dir, "v2"))
    layout.write_manifest(layout.version_dir(data_dir, "v2"), {**m, "version": "v2"})
    layout.flip_current(data_dir, "v1")
    marker.touch()


def make_clips(data_dir: Path, n: int, seed: int = 7) -> list[tuple[str, float, bytes]]:
    """``n`` noisy 5 s MP3 clips at random places of random episodes (cached beside the data)."""
    folder = data_dir / f"clips-{n}-{seed}"
    if not folder.is_dir():
        tmp = data_dir / f".clips-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for k in range(n):
            s, e = int(rng.integers(1, SEASONS + 1)), int(rng.integers(1, EPISODES_PER_SEASON + 1))
            start = float(rng.uniform(0, EPISODE_SECONDS - CLIP_SECONDS - 1))
            # the generator is seeded from the start, so regenerate up to the clip's end
            x = synth.episode(_seed(s, e), start + CLIP_SECONDS, RATE)[int(start * RATE):]
            clip = synth.encode(synth.add_noise(x, 15, seed=k), RATE, "mp3")
            (tmp / f"{k:03d}_S{s:02d}E{e:02d}_{start:.3f}.mp3").write_bytes(clip)
        tmp.rename(folder)
    out = []
    for f in sorted(folder.glob("*.mp3")):
        _k, eid, start = f.stem.split("_")
        out.append((eid, float(start), f.read_bytes()))
    return out


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen, float, float]:
    """Start `citywok serve`; returns the process, seconds from spawn to /readyz 200, and its CPU seconds then."""
    import urllib.error
    import urllib.request

    citywok = Path(sys.executable).with_name("citywok")
    env = {**os.environ, "DATA_DIR": str(data_dir), "POLL_INTERVAL": "0.25"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(citywok), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    took = time.perf_counter() - t0
                    return proc, took, _cpu(psutil.Process(proc.pid))
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.005)
        if time.perf_counter() - t0 > 60:
            proc.kill()
            raise SystemExit("server not ready after 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- load ------------------------------------------------------------------------------------------


@dataclass
class Run:
    offered: float
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    wrong: int = 0
    failures: list[str] = field(default_factory=list)
    dropped: int = 0  # not sent: the in-flight bound was reached
    wall: float = 0.0
    peak_rss: int = 0
    server_cpu: float = 0.0  # CPU seconds the server used during the run
    client_cpu: float = 0.0  # ... and this load generator
    versions: dict[str, int] = field(default_factory=dict)

    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def share(self, status: int) -> float:
        sent = sum(self.statuses.values()) + len(self.failures)
        return self.statuses.get(status, 0) / sent if sent else 0.0


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


async def send(session: aiohttp.ClientSession, url: str, clip: tuple[str, float, bytes], run: Run) -> None:
    """One identify request, recorded in ``run``."""
    eid, _start, data = clip
    form = aiohttp.FormData()
    form.add_field("file", data, filename="clip.mp3", content_type="audio/mpeg")
    t0 = time.perf_counter()
    try:
        async with session.post(f"{url}/api/v1/identify", data=form) as r:
            body = await r.json()
            run.statuses[r.status] = run.statuses.get(r.status, 0) + 1
            if r.status == 200:
                run.client_ms.append((time.perf_counter() - t0) * 1000)
                run.server_ms.append(body["elapsed_ms"])
                run.versions[body["db_version"]] = run.versions.get(body["db_version"], 0) + 1
                if body["episode_id"] != eid:
                    run.wrong += 1
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        run.failures.append(f"{type(e).__name__}: {e}")


@contextlib.asynccontextmanager
async def observed(run: Run, server_pid: int) -> AsyncIterator[None]:
    """Sample the server's RSS while the block runs; record CPU used by the server and by this process."""
    proc, me = psutil.Process(server_pid), psutil.Process()

    async def sample_rss() -> None:
        while True:
            try:
                run.peak_rss = max(run.peak_rss, _rss(proc))
            except psutil.Error:
                return
            await asyncio.sleep(0.25)

    cpu0, me0 = _cpu(proc), _cpu(me)
    sampler = asyncio.create_task(sample_rss())
    t0 = time.perf_counter()
    try:
        yield
    finally:
        run.wall = time.perf_counter() - t0
        sampler.cancel()
        run.server_cpu, run.client_cpu = _cpu(proc) - cpu0, _cpu(me) - me0


def _tree(p: psutil.Process) -> list[psutil.Process]:
    """The server and its worker processes."""
    return [p, *p.children(recursive=True)]


def _cpu(p: psutil.Process) -> float:
    """CPU seconds of a process and its live children, plus what its waited-for children used."""
    total = 0.0
    for q in _tree(p) if p.pid != os.getpid() else [p]:
        with contextlib.suppress(psutil.Error):
            t = q.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if q is p else 0.0)
    return total


def _rss(p: psutil.Process) -> int:
    """Resident memory of the server and its workers (pages shared between them, the LMDB maps and
    what forked processes share, are counted once per process: an upper bound)."""
    total = 0
    for q in _tree(p):
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


async def open_loop(url: str, clips: list[tuple[str, float, bytes]], rate: float, seconds: float,
                    server_pid: int) -> Run:
    """Send ``rate`` identify requests per second for ``seconds``, on schedule, whether or not earlier ones
    have returned (up to MAX_IN_FLIGHT)."""
    run = Run(rate, seconds)
    tasks: set[asyncio.Task] = set()
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session, \
            observed(run, server_pid):
        t_start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = t_start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= MAX_IN_FLIGHT:
                run.dropped += 1
                continue
            t = asyncio.create_task(send(session, url, clips[i % len(clips)], run))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
    return run


async def closed_loop(url: str, clips: list[tuple[str, float, bytes]], clients: int, seconds: float,
                      server_pid: int, during: Callable[[], Awaitable[None]] | None = None) -> Run:
    """``clients`` clients, each sending its next request when the last returns, for ``seconds`` or until
    ``during`` (run alongside) ends, whichever is later."""
    run = Run(0.0, seconds)
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession, k: int) -> None:
        i = k
        while not stop.is_set():
            await send(session, url, clips[i % len(clips)], run)
            i += clients

    async def timer() -> None:
        await asyncio.sleep(seconds)
        if during:
            await during()
        stop.set()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
            observed(run, server_pid):
        await asyncio.gather(timer(), *(client(session, k) for k in range(clients)))
    run.seconds = run.wall
    return run


def report(title: str, run: Run) -> None:
    sent = sum(run.statuses.values()) + len(run.failures)
    print(f"\n{title}")
    offered = f"offered {run.offered:.0f}/s" if run.offered else "closed loop"
    print(f"  {offered} for {run.seconds:.0f} s: {sent} sent, {run.dropped} not sent "
          f"(in-flight bound {MAX_IN_FLIGHT}), statuses {dict(sorted(run.statuses.items()))}, "
          f"transport failures {len(run.failures)}")
    print(f"  answered 200: {run.ok() / run.wall:.1f}/s over {run.wall:.1f} s; wrong episode {run.wrong}")
    print(f"  server time elapsed_ms: p50 {pct(run.server_ms, 50):.1f}  p99 {pct(run.server_ms, 99):.1f}   "
          f"client round trip ms: p50 {pct(run.client_ms, 50):.1f}  p99 {pct(run.client_ms, 99):.1f}")
    print(f"  429 share {run.share(429) * 100:.1f} %; "
          f"server peak RSS (with its workers) {run.peak_rss / 2**20:.0f} MiB")
    answered = max(1, sum(run.statuses.values()))
    print(f"  CPU: server {run.server_cpu:.1f} s ({run.server_cpu / run.wall * 100:.0f} % of one core; "
          f"{run.server_cpu / max(1, run.ok()) * 1000:.0f} ms per 200, {run.server_cpu / answered * 1000:.0f} ms per "
          f"answer incl. 429s), load generator {run.client_cpu:.1f} s")
    if run.failures:
        print(f"  first failures: {run.failures[:3]}")


async def alive(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def swap_loop(url: str, data_dir: Path, swaps: int, interval: float) -> list[float]:
    """Flip `current` v1 <-> v2 ``swaps`` times; returns seconds from each flip until /readyz reports it."""
    took = []
    async with aiohttp.ClientSession() as s:
        for _ in range(swaps):
            target = "v2" if layout.current_version(data_dir) == "v1" else "v1"
            t0 = time.perf_counter()
            layout.flip_current(data_dir, target)
            while True:
                async with s.get(f"{url}/readyz") as r:
                    if (await r.json()).get("db_version") == target:
                        break
                await asyncio.sleep(0.02)
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(max(0.0, interval - took[-1]))
    return took


def main(argv: list[str] | None = None) -> int:
    global SEASONS, EPISODES_PER_SEASON
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="default /tmp/citywok-bench-load[-N]")
    ap.add_argument("--seasons", type=int, default=SEASONS,
                    help="split the same 40 episodes (10 h) into this many season shards (a divisor of 40)")
    ap.add_argument("--rate", type=float, default=100.0, help="fixed offered rate, requests/s")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each open-loop phase")
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--clips", type=int, default=40)
    args = ap.parse_args(argv)
    args.seconds = min(args.seconds, 60.0)  # bounded in time ...
    args.rate = min(args.rate, 400.0)  # ... and in count
    total = SEASONS * EPISODES_PER_SEASON
    if args.seasons < 1 or total % args.seasons:
        ap.error(f"--seasons must divide {total}")
    SEASONS, EPISODES_PER_SEASON = args.seasons, total // args.seasons
    if args.data is None:
        args.data = Path("/tmp/citywok-bench-load" + ("" if SEASONS == 20 else f"-{SEASONS}"))

    t0 = time.monotonic()
    build_data(args.data)
    vdir = layout.version_dir(args.data, "v1")
    manifest = layout.read_manifest(vdir)
    hours = SEASONS * EPISODES_PER_SEASON * EPISODE_SECONDS / 3600
    size = sum(f.stat().st_size for f in vdir.rglob(layout.DATA_FILE))
    print(f"data: {args.data} ({len(manifest['seasons'])} season shards, {SEASONS * EPISODES_PER_SEASON} episodes, "
          f"{hours:.1f} h of audio at {RATE} Hz, {size / 2**20:.0f} MiB per version; ready in "
          f"{time.monotonic() - t0:.0f} s)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start "
          "(shared with other work; the load generator runs on the same cores)")
    layout.flip_current(args.data, "v1")
    clips = make_clips(args.data, args.clips)

    startups, cpus = [], []
    for _ in range(5):
        proc, took, cpu = start_server(args.data, free_port())
        startups.append(took)
        cpus.append(cpu)
        stop_server(proc)
    print(f"\nstartup to ready (spawn -> /readyz 200, {SEASONS} season shards), 5 runs: "
          + ", ".join(f"{t * 1000:.0f} ms" for t in startups) + f"; median {statistics.median(startups) * 1000:.0f} ms"
          + f"; server CPU time until ready, median {statistics.median(cpus) * 1000:.0f} ms")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, _, _ = start_server(args.data, port)
    try:
        asyncio.run(open_loop(url, clips, 10, 2, proc.pid))  # warm-up
        base = asyncio.run(closed_loop(url, clips, CLIENTS, 10, proc.pid))
        sustained = base.ok() / base.wall
        report(f"closed loop, {CLIENTS} clients (never more than workers + queue, so no 429): the sustained rate",
               base)

        run = asyncio.run(open_loop(url, clips, args.rate, args.seconds, proc.pid))
        report(f"open loop at a fixed {args.rate:.0f}/s", run)

        over = 2 * max(1.0, sustained)
        run2 = asyncio.run(open_loop(url, clips, over, args.seconds, proc.pid))
        report(f"open loop at twice the sustained rate ({over:.0f}/s)", run2)
        print(f"  server still up after overload: {asyncio.run(alive(url))}")

        took: list[float] = []

        async def swaps() -> None:
            took.extend(await swap_loop(url, args.data, args.swaps, 0.75))

        if args.swaps > 0:
            run3 = asyncio.run(closed_loop(url, clips, CLIENTS, 1.0, proc.pid, swaps))
            report(f"{args.swaps} hot swaps under full load ({CLIENTS} closed-loop clients)", run3)
            failed = sum(v for k, v in run3.statuses.items() if k != 200) + len(run3.failures) + run3.wrong
            print(f"  swaps done {len(took)}, flip -> served median {statistics.median(took) * 1000:.0f} ms; "
                  f"answers by version {run3.versions}; failed requests {failed}")
        rss = _rss(psutil.Process(proc.pid))
        print(f"  server still up: {asyncio.run(alive(url))}; RSS now {rss / 2**20:.0f} MiB")
    finally:
        stop_server(proc)
        layout.flip_current(args.data, "v1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
