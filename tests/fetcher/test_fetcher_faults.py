"""Faults between the bucket and the volume: damaged objects, 5xx bursts, dropped connections, kills.

Whatever happens, `current` keeps pointing at a verified version, and the next run finishes the job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.store import ChecksumError, RetryPolicy, Store
from citywok.fetcher.sync import Fetcher
from conftest import ACCESS_KEY, SECRET_KEY
from faultproxy import Fault, FaultProxy
from fetcher_testkit import make_big_season, make_season
from prometheus_client import REGISTRY

from citywok import layout

FAST = RetryPolicy(sdk_attempts=2, attempts=10, base=0.01, cap=0.05)
RETRIES = "citywok_fetcher_retries_total"  # the fetcher's counters, read through the public registry


def publish(settings, version: str, seasons: dict[int, list[int]]) -> dict:
    vdir = layout.version_dir(settings.data_dir, version)
    for season, seeds in seasons.items():
        make_season(vdir, season, seeds, seconds=15)
    pack_version(settings.data_dir, version, progress=False)
    push_version(Store(settings, FAST), archives_dir(settings.data_dir, version), version, progress=False)
    return json.loads((archives_dir(settings.data_dir, version) / "manifest.json").read_text())


def s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def volume_state(data_dir: Path) -> tuple[str | None, list[str]]:
    fp = layout.fingerprints_dir(data_dir)
    names = sorted(p.name for p in fp.iterdir()) if fp.is_dir() else []
    return layout.current_version(data_dir), names


@pytest.fixture
def served_v1(settings_for):
    """A node serving v1, and v2 published with a changed season 2."""
    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", {1: [1], 2: [2]})
    Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    m2 = publish(build, "v2", {1: [1], 2: [2, 3]})
    return build, node, m2


def test_corrupted_object_names_file_and_checksums_and_keeps_current(served_v1, bucket, moto_endpoint) -> None:
    build, node, m2 = served_v1
    key = "fingerprints/v2/season_02.lmdb.tar.zst"
    good = s3(moto_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    bad = bytearray(good)
    bad[100] ^= 0x01
    s3(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=bytes(bad))
    before = REGISTRY.get_sample_value("citywok_fetcher_verify_failures_total")
    expected = m2["seasons"]["02"]["sha256"]
    with pytest.raises(ChecksumError) as err:
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    msg = str(err.value)
    assert msg.startswith("season_02.lmdb.tar.zst: sha256 mismatch: expected " + expected + ", got ")
    assert REGISTRY.get_sample_value("citywok_fetcher_verify_failures_total") == before + 1
    current, names = volume_state(node.data_dir)
    assert current == "v1" and "v2" not in names and ".staging-v2" not in names
    assert not list(layout.fingerprints_dir(node.data_dir).glob(".downloads-v2/*.part"))
    s3(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=good)
    res = Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    assert res.downloaded == [2] and layout.current_version(node.data_dir) == "v2"


def test_truncated_object_is_refused(served_v1, bucket, moto_endpoint) -> None:
    build, node, m2 = served_v1
    key = "fingerprints/v2/season_02.lmdb.tar.zst"
    good = s3(moto_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    s3(moto_endpoint).put_object(Bucket=bucket, Key=key, Body=good[: len(good) // 3])
    with pytest.raises(
        ChecksumError, match=r"season_02.lmdb.tar.zst: truncated in the bucket: .* manifest says \d+ bytes"
    ):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    assert volume_state(node.data_dir)[0] == "v1"
    assert "v2" not in volume_state(node.data_dir)[1]


def test_missing_archive_and_malformed_manifest(served_v1, bucket, moto_endpoint) -> None:
    build, node, m2 = served_v1
    s3(moto_endpoint).delete_object(Bucket=bucket, Key="fingerprints/v2/season_02.lmdb.tar.zst")
    with pytest.raises(Exception, match=r"season_02.lmdb.tar.zst: missing from the bucket \(s3://"):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    s3(moto_endpoint).put_object(Bucket=bucket, Key="fingerprints/v2/manifest.json", Body=b'{"format": "x"}')
    with pytest.raises(Exception, match="manifest.json: not a CityWok fingerprints manifest"):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    assert volume_state(node.data_dir)[0] == "v1"


def test_5xx_bursts_and_throttling_are_retried(served_v1, proxy: FaultProxy) -> None:
    build, node, m2 = served_v1
    proxy.reset()
    proxy.add(Fault("status", path_contains="manifest.json", status=500, times=3))
    proxy.add(Fault("status", path_contains="season_02.lmdb.tar.zst", status=503, times=7))
    retries = REGISTRY.get_sample_value(RETRIES)
    res = Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    assert res.downloaded == [2] and layout.current_version(node.data_dir) == "v2"
    statuses = [s for _m, _p, s in proxy.traffic.requests]
    assert statuses.count(500) == 3 and statuses.count(503) == 7
    assert REGISTRY.get_sample_value(RETRIES) > retries, "a burst longer than botocore's attempts hit our own retry"


def test_dropped_connections_resume_by_range(served_v1, proxy: FaultProxy) -> None:
    build, node, m2 = served_v1
    size = m2["seasons"]["02"]["bytes"]
    proxy.reset()
    proxy.add(Fault("drop", path_contains="season_02.lmdb.tar.zst", after=size // 4, times=3))
    res = Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v2")
    assert res.downloaded == [2] and res.bytes_downloaded == size
    starts = [int(r.split("=")[1].split("-")[0]) for p, r in proxy.traffic.ranges if "season_02" in p]
    assert starts[0] == 0 and len(starts) == 4 and starts == sorted(starts) and starts[-1] >= 3 * (size // 4)
    assert layout.current_version(node.data_dir) == "v2"


def test_gives_up_with_a_clear_error_when_the_server_keeps_failing(served_v1, proxy: FaultProxy) -> None:
    build, node, m2 = served_v1
    proxy.add(Fault("status", path_contains="season_02.lmdb.tar.zst", status=500, times=-1))
    store = Store(node, RetryPolicy(sdk_attempts=1, attempts=3, base=0.01, cap=0.02))
    with pytest.raises(Exception, match=r"season_02.lmdb.tar.zst: gave up after 3 attempts"):
        Fetcher(store, node.data_dir, progress=False).fetch("v2")
    assert volume_state(node.data_dir)[0] == "v1"


class CurrentWatcher:
    """Polls `current` in a thread; records any moment it pointed at a folder without a manifest."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.bad, self.seen = data_dir, [], set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            v = layout.current_version(self.data_dir)
            if v is not None:
                self.seen.add(v)
                if not layout.is_complete(layout.version_dir(self.data_dir, v)):
                    self.bad.append(v)
            time.sleep(0.002)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def test_killed_mid_download_and_mid_unpack_then_rerun_succeeds(settings_for, bucket, proxy) -> None:
    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", {1: [1]})
    Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    make_big_season(layout.version_dir(build.data_dir, "v2"), 1, episodes=2, hashes_per_episode=1_500_000)
    pack_version(build.data_dir, "v2", progress=False)
    push_version(Store(build, FAST), archives_dir(build.data_dir, "v2"), "v2", progress=False)
    m2 = json.loads((archives_dir(build.data_dir, "v2") / "manifest.json").read_text())
    size, data_bytes = m2["seasons"]["01"]["bytes"], m2["seasons"]["01"]["data_bytes"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "POD_", "DB_"))}
    env.update(
        DATA_DIR=str(node.data_dir),
        S3_BUCKET=bucket,
        AWS_ENDPOINT_URL=proxy.url,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    cmd = [sys.executable, "-m", "fetcher", "fetch", "--version", "v2", "--once", "--no-progress"]
    fp = layout.fingerprints_dir(node.data_dir)
    watcher = CurrentWatcher(node.data_dir)
    try:
        # 1. killed mid-download: the body trickles, the .part file grows, SIGKILL
        proxy.add(Fault("slow", path_contains="season_01.lmdb.tar.zst", rate=size / 8))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        parts = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            parts = [p for p in fp.glob(".downloads-v2/*.part") if p.stat().st_size > size // 10]
            if parts:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert parts, "the download never started"
        had = parts[0].stat().st_size
        assert 0 < had < size
        assert volume_state(node.data_dir)[0] == "v1" and not (fp / "v2").exists()

        # 2. killed mid-unpack: the rest downloads at full speed, data.mdb is half written, SIGKILL
        proxy.reset()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        caught = 0
        staged = fp / ".staging-v2" / "season_01.lmdb" / "data.mdb"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                n = staged.stat().st_size
            except FileNotFoundError:
                n = 0
            if 0 < n < data_bytes:
                proc.send_signal(signal.SIGKILL)
                caught = n
                break
            time.sleep(0.001)
        proc.wait()
        assert caught, "never caught the unpack in progress"
        resumed = [r for p, r in proxy.traffic.ranges if "season_01" in p]
        assert resumed and int(resumed[0].split("=")[1].split("-")[0]) >= had, "the download resumed by Range"
        assert volume_state(node.data_dir)[0] == "v1" and not (fp / "v2").exists()

        # 3. the next run finishes without downloading again
        proxy.reset()
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert proxy.traffic.count("GET", "season_01.lmdb.tar.zst") == 0
    finally:
        watcher.close()
    assert layout.current_version(node.data_dir) == "v2"
    assert watcher.bad == [] and watcher.seen == {"v1", "v2"}
    assert sorted(p.name for p in fp.iterdir() if not p.name.startswith(".fetch")) == ["current", "v1", "v2"]


def test_a_verified_archive_holding_a_truncated_lmdb_is_refused_without_a_crash(settings_for) -> None:
    """The archive's sha256 matches the manifest, but the data.mdb inside is cut short: `citywok
    fetch` (a real process, where a SIGBUS would show) names the damage and keeps `current`."""
    import zstandard
    from citywok.fetcher.archive import _write_tar
    from citywok.fetcher.pack import sha256_line

    from citywok.checksum import sha256_file

    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", {1: [1]})
    Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    vdir = layout.version_dir(build.data_dir, "v2")
    make_season(vdir, 1, [1, 2], seconds=15)
    pack_version(build.data_dir, "v2", progress=False)
    out = archives_dir(build.data_dir, "v2")
    cut = build.data_dir / "cut" / "season_01.lmdb"
    cut.mkdir(parents=True)
    data = (vdir / "season_01.lmdb" / "data.mdb").read_bytes()
    (cut / "data.mdb").write_bytes(data[:8192])
    archive = out / "season_01.lmdb.tar.zst"
    with open(archive, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as z:
        _write_tar(z, "season_01.lmdb", cut / "data.mdb")
    doc = json.loads((out / "manifest.json").read_text())
    doc["seasons"]["01"].update(sha256=sha256_file(archive), bytes=archive.stat().st_size)
    (out / "manifest.json").write_text(json.dumps(doc))
    (out / "season_01.lmdb.tar.zst.sha256").write_text(sha256_line(doc["seasons"]["01"]["sha256"], archive.name))
    push_version(Store(build, FAST), out, "v2", progress=False)
    env = {**os.environ, "DATA_DIR": str(node.data_dir), "S3_BUCKET": node.s3_bucket,
           "AWS_ENDPOINT_URL": node.aws_endpoint_url, "AWS_REGION": "us-east-1"}
    r = subprocess.run([str(Path(sys.executable).with_name("citywok")), "fetch", "--version", "v2"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode > 0, (r.returncode, r.stderr[-500:])
    assert "truncated" in r.stderr + r.stdout and "season_01" in r.stderr + r.stdout
    assert layout.current_version(node.data_dir) == "v1"
