"""Scale-up benchmark: how soon does a new matcher pod serve? (issue 10)

    python -m bench.scaleup [--seasons 20] [--runs 3]

A pod starts with `citywok fetch --once` (the init container) and then `citywok serve`; it is ready
when /readyz answers 200. Timed from the fetch's start to ready, as separate processes like the
pod's containers, with 20 seasons in a loopback S3 server (moto):
  * cold: an empty volume (emptyDir), so every season is downloaded, verified and unpacked;
  * warm: the volume already holds the version (a PVC reused by the new pod).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.store import RetryPolicy, Store

from bench.fetch import build_version
from citywok.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pod_start(data_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from the init container's start to /readyz 200, and how much of it was the fetch."""
    port = _free_port()
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "citywok", "fetch", "--once", "--version", "v1", "--no-progress",
                    "--data-dir", str(data_dir)], env=env, check=True, capture_output=True, timeout=600)
    t_fetch = time.monotonic() - t0
    server = subprocess.Popen([sys.executable, "-m", "citywok", "serve", "--port", str(port),
                               "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - t0, t_fetch
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("the matcher never became ready")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seasons", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1320.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "citywok-bench-fetch")
    args = ap.parse_args()
    from moto.server import ThreadedMotoServer

    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    build = args.work / "build"
    build_version(build, "v1", args.seasons, args.episodes, args.seconds)
    pack_version(build, "v1", progress=False)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto._port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        cfg = Settings(s3_bucket="bench", aws_endpoint_url=endpoint, aws_region="us-east-1")
        push_version(Store(cfg, RetryPolicy()), archives_dir(build, "v1"), "v1", progress=False)
        env.update(S3_BUCKET="bench", AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1")
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            cold, warm = [], []
            for i in range(args.runs):
                volume = Path(tmp) / f"pvc{i}"
                cold.append(pod_start(volume, env))
                warm.append(pod_start(volume, env))
        for name, runs in (("cold volume (emptyDir): fetch + verify + unpack + serve", cold),
                           ("warm volume (PVC): fetch finds the version + serve", warm)):
            total = statistics.median(r[0] for r in runs)
            fetch = statistics.median(r[1] for r in runs)
            print(f"{name}: pod start to ready median {total:.2f} s (of which fetch {fetch:.2f} s); "
                  f"runs {', '.join(f'{r[0]:.2f}' for r in runs)}")
        print(f"{args.seasons} seasons, {args.episodes} episodes of {args.seconds:.0f} s each; load {os.getloadavg()}")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
