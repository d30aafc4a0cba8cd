"""Fetcher benchmark: pack -> push to a loopback S3 server -> fetch + verify + unpack, and dedupe.

    python -m bench.fetch [--seasons 20] [--episodes 22] [--runs 3] [--work /tmp/citywok-bench-fetch]

Seasons are generated: a few synthetic episodes are really fingerprinted, then each (season, episode)
gets those hashes remixed (XOR with its own 21-bit mask, times shifted), so the shards have the statistics of real
fingerprints without hours of audio. Prints the median of the runs for:
  * fetch + verify + unpack of a whole version from moto's server (its own process), MB/s of archive;
  * the same against a minimal loopback HTTP server (sendfile), to tell the server's cost from ours;
  * download only (no unpack) and unpack + verify only (no network), to show where time goes;
  * bytes downloaded when a version changes one season; archive size vs LMDB size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import numpy as np
from citywok.fetcher.archive import unpack_archive
from citywok.fetcher.manifest import parse
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.store import RetryPolicy, Store
from citywok.fetcher.sync import Fetcher, verify_season
from citywok.matcher.store.shard import FORMAT_VERSION as SHARD_FORMAT

from citywok import layout
from citywok.settings import Settings

MB = 1e6


def build_version(data_dir: Path, version: str, seasons: int, episodes: int, seconds: float) -> None:
    from citywok.matcher import synth
    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.engine.landmarks import Hashes
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.shard import Shard, compact

    vdir = layout.version_dir(data_dir, version)
    if layout.is_complete(vdir):
        return
    print(
        f"building {seasons} seasons x {episodes} episodes of {seconds:.0f} s (fingerprinting 4 sources) ...",
        flush=True,
    )
    sources = [fingerprint_pcm(synth.episode(seed, seconds, DEFAULT_PARAMS.sample_rate)) for seed in range(4)]
    for s in range(1, seasons + 1):
        with Shard.create(vdir / layout.season_name(s), DEFAULT_PARAMS, s) as shard:
            for e in range(1, episodes + 1):
                rng = np.random.default_rng(s * 1000 + e)
                src = sources[(s + e) % len(sources)]
                mask = np.uint32(rng.integers(0, 1 << 21))
                shift = np.uint32(rng.integers(0, 1000))  # no two episodes share their times either
                shard.add_episode(
                    f"S{s:02d}E{e:02d}", Hashes(src.hash ^ mask, src.t + shift), seconds, f"bench-{s}-{e}"
                )
        compact(vdir / layout.season_name(s))  # as `citywok ingest` leaves a season
        print(f"  season {s} built", flush=True)
    layout.write_manifest(vdir, {"seasons": [], "built_by": "bench.fetch"})


def change_one_season(data_dir: Path, src: str, dst: str) -> None:
    """``dst`` = ``src`` with one more episode in season 1 (every other season unchanged)."""
    from citywok.matcher import synth
    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.store.shard import Shard

    a, b = layout.version_dir(data_dir, src), layout.version_dir(data_dir, dst)
    if b.exists():
        shutil.rmtree(b)
    shutil.copytree(a, b)
    with Shard.open(b / "season_01.lmdb", writable=True) as shard:
        shard.add_episode(
            "S01E99", fingerprint_pcm(synth.episode(99, 120, DEFAULT_PARAMS.sample_rate)), 120, "x"
        )


class StaticS3(ThreadingHTTPServer):
    """Just enough S3 (GET with Range of PREFIX/<version>/<name>) served from archive folders by sendfile."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.split("?")[0].strip("/").split("/")
                path = (
                    server.roots.get(parts[-2], Path("/nonexistent")) / parts[-1] if len(parts) >= 2 else None
                )
                if path is None or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                size = path.stat().st_size
                start, end = 0, size - 1
                rng = self.headers.get("Range")
                if rng:
                    a, _, b = rng.split("=")[1].partition("-")
                    start, end = int(a), min(int(b) if b else size - 1, size - 1)
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(end - start + 1))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("ETag", '"bench"')
                self.end_headers()
                self.wfile.flush()
                with open(path, "rb") as f:
                    self.connection.sendfile(f, start, end - start + 1)

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_runs(runs: int, fn: Callable[[int], float]) -> tuple[float, list[float]]:
    times = [fn(i) for i in range(runs)]
    return statistics.median(times), times


def cpu_seconds() -> float:
    """CPU time of this process (the fetcher, and the in-process server), to see past a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def disk_write_mbps(folder: Path, mb: int = 256) -> float:
    """Sequential write + fsync speed of the volume: a fetch writes the archive and the unpacked LMDB."""
    block = os.urandom(1 << 20)
    path = folder / "disk-probe.bin"
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    dt = time.perf_counter() - t
    path.unlink()
    return mb * (1 << 20) / MB / dt


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def compression_ceiling(files: list[Path]) -> str:
    """How much the strongest general-purpose compressors take off the same LMDB files: how far any
    archive format could go below them (the packed postings are near their entropy already)."""
    import lzma

    import zstandard

    raw = xz = zs = 0
    zstd = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
        22, window_log=27, enable_ldm=True))
    for f in files:
        data = f.read_bytes()
        raw += len(data)
        xz += len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        zs += len(zstd.compress(data))
    return (f"ceiling: the same LMDB files with xz -9e: {1 - xz / raw:.1%} smaller; "
            f"zstd -22 --long: {1 - zs / raw:.1%} smaller")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seasons", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1320.0, help="episode length")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "citywok-bench-fetch")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    build = args.work / f"build-shard{SHARD_FORMAT}"
    build_version(build, "v1", args.seasons, args.episodes, args.seconds)

    t_pack = timed(lambda: pack_version(build, "v1", progress=False))
    doc = json.loads((archives_dir(build, "v1") / layout.MANIFEST).read_text())
    entries = parse(doc, "v1")
    archive_bytes = sum(e.bytes for e in entries)
    lmdb_bytes = sum(
        (p / layout.DATA_FILE).stat().st_size for p in layout.season_dirs(layout.version_dir(build, "v1")).values()
    )
    data_bytes = sum(e.data_bytes for e in entries)
    print(
        f"pack: {len(entries)} seasons, LMDB {lmdb_bytes / MB:.1f} MB "
        f"(compacted {data_bytes / MB:.1f} MB) -> "
        f"archives {archive_bytes / MB:.1f} MB = {archive_bytes / lmdb_bytes:.1%} of the LMDB files "
        f"({1 - archive_bytes / lmdb_bytes:.1%} smaller), {t_pack:.1f} s"
    )
    seasons = layout.season_dirs(layout.version_dir(build, "v1")).values()
    print(compression_ceiling([p / layout.DATA_FILE for p in seasons]))

    with tempfile.TemporaryDirectory(dir=args.work) as tmp_s:
        tmp = Path(tmp_s)
        # moto in a process of its own, as a real S3 server is: in this process it would share the GIL
        port = _free_port()
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            endpoint = f"http://127.0.0.1:{port}"
            _wait_for_port(port)
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
            cfg = Settings(s3_bucket="bench", aws_endpoint_url=endpoint, aws_region="us-east-1")
            retry = RetryPolicy()
            t_push = timed(
                lambda: push_version(Store(cfg, retry), archives_dir(build, "v1"), "v1", progress=False)
            )
            print(f"push v1 to moto: {archive_bytes / MB / t_push:.0f} MB/s ({t_push:.1f} s)")

            cpu: list[float] = []

            def fetch_run(endpoint_url: str) -> Callable[[int], float]:
                def run(i: int) -> float:
                    node = tmp / f"node-{endpoint_url.rsplit(':', 1)[1]}-{i}"
                    s = Settings(
                        data_dir=node,
                        s3_bucket="bench",
                        aws_endpoint_url=endpoint_url,
                        aws_region="us-east-1",
                    )
                    f = Fetcher(Store(s, retry, pool=args.jobs * 2), node, jobs=args.jobs, progress=False)
                    c = cpu_seconds()
                    dt = timed(lambda: f.fetch("v1"))
                    cpu.append(cpu_seconds() - c)
                    shutil.rmtree(node)
                    return dt

                return run

            disk = disk_write_mbps(tmp)
            per_archive_byte = 1 + data_bytes / archive_bytes
            print(
                f"disk: {disk:.0f} MB/s sequential write + fsync; a fetch writes "
                f"{per_archive_byte:.1f} bytes per archive byte (archive + unpacked LMDB), "
                "so the disk alone caps a fetch at "
                f"{disk / per_archive_byte:.0f} MB/s of archive"
            )
            print(load())
            med, times = median_runs(args.runs, fetch_run(endpoint))
            print(
                f"fetch+verify+unpack from moto: {archive_bytes / MB / med:.0f} MB/s of archive "
                f"(median of {args.runs}: {', '.join(f'{t:.2f}' for t in times)} s; "
                f"{data_bytes / MB / med:.0f} MB/s of LMDB written)"
            )

            static = StaticS3({"v1": archives_dir(build, "v1")})
            threading.Thread(target=static.serve_forever, daemon=True).start()
            cpu.clear()
            med_s, times_s = median_runs(args.runs, fetch_run(static.url))
            print(
                f"fetch+verify+unpack from a loopback sendfile server: "
                f"{archive_bytes / MB / med_s:.0f} MB/s of archive "
                f"(median of {args.runs}: {', '.join(f'{t:.2f}' for t in times_s)} s); "
                f"CPU cost {archive_bytes / MB / statistics.median(cpu):.0f} MB of archive per CPU-second "
                f"(median {statistics.median(cpu):.2f} CPU-s per fetch, server included)"
            )
            print(load())

            def download_only(url: str) -> Callable[[int], float]:
                def run(i: int) -> float:
                    store = Store(
                        Settings(s3_bucket="bench", aws_endpoint_url=url, aws_region="us-east-1"),
                        retry,
                        pool=args.jobs * 2,
                    )
                    d = tmp / f"dl-{i}"
                    d.mkdir()
                    from concurrent.futures import ThreadPoolExecutor

                    t = time.perf_counter()
                    with ThreadPoolExecutor(args.jobs) as pool:
                        list(
                            pool.map(
                                lambda e: store.download("v1", e.archive, d / e.archive, e.bytes, e.sha256),
                                entries,
                            )
                        )
                    dt = time.perf_counter() - t
                    shutil.rmtree(d)
                    return dt

                return run

            med_d, _ = median_runs(args.runs, download_only(endpoint))
            med_ds, _ = median_runs(args.runs, download_only(static.url))
            print(
                f"download + sha256 only: moto {archive_bytes / MB / med_d:.0f} MB/s, "
                f"loopback sendfile server {archive_bytes / MB / med_ds:.0f} MB/s"
            )

            def unpack_only(i: int) -> float:
                d = tmp / f"un-{i}"
                t = time.perf_counter()
                for e in entries:
                    unpack_archive(archives_dir(build, "v1") / e.archive, d, e.name)
                    verify_season(d / e.name, e, doc.get("params_digest"))
                dt = time.perf_counter() - t
                shutil.rmtree(d)
                return dt

            med_u, _ = median_runs(args.runs, unpack_only)
            print(
                f"unpack + verify only (local archives, one thread): "
                f"{archive_bytes / MB / med_u:.0f} MB/s of archive, "
                f"{data_bytes / MB / med_u:.0f} MB/s of LMDB written"
            )
            static.shutdown()

            change_one_season(build, "v1", "v2")
            pack_version(build, "v2", progress=False)
            pushed = push_version(Store(cfg, retry), archives_dir(build, "v2"), "v2", progress=False)
            node = tmp / "node-dedupe"
            s = Settings(data_dir=node, s3_bucket="bench", aws_endpoint_url=endpoint, aws_region="us-east-1")
            f = Fetcher(Store(s, retry), node, jobs=args.jobs, progress=False)
            first = f.fetch("v1")
            second = f.fetch("v2")
            v2 = parse(json.loads((archives_dir(build, "v2") / layout.MANIFEST).read_text()), "v2")
            print(
                f"v2 (season 1 changed): push uploaded {pushed.bytes_sent / MB:.1f} MB "
                f"({len(pushed.sent)} sent, {len(pushed.copied)} copied server-side); fetch of v2 after v1 "
                f"downloaded {second.bytes_downloaded / MB:.2f} MB of {sum(e.bytes for e in v2) / MB:.1f} MB "
                f"(seasons {second.downloaded} downloaded, {len(second.reused)} reused; "
                f"v1 had downloaded {first.bytes_downloaded / MB:.1f} MB)"
            )
        finally:
            moto.terminate()
            moto.wait(timeout=30)


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto's server did not listen on port {port}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
