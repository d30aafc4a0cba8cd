"""Sidecar mode: following the desired version through changes and a bad version, reporting what is served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.report import ERROR_ANNOTATION, SERVED_ANNOTATION, Status, StatusFile, annotation_patch
from citywok.fetcher.store import RetryPolicy, Store
from citywok.fetcher.watch import DesiredVersion, Follower
from conftest import ACCESS_KEY, SECRET_KEY
from fetcher_testkit import make_season

from citywok import layout
from tests.support import free_port, wait_for

FAST = RetryPolicy(sdk_attempts=1, attempts=3, base=0.01, cap=0.05)


def publish(settings, version: str, seeds: list[int]) -> None:
    make_season(layout.version_dir(settings.data_dir, version), 1, seeds, seconds=15)
    pack_version(settings.data_dir, version, progress=False)
    push_version(Store(settings, FAST), archives_dir(settings.data_dir, version), version, progress=False)


def corrupt(bucket: str, endpoint: str, version: str) -> None:
    """Flip one byte of the season's archive in the bucket (the manifest still has the good sha256)."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    key = f"fingerprints/{version}/season_01.lmdb.tar.zst"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Status] = []

    def report(self, status: Status) -> None:
        self.seen.append(status)


def test_follower_keeps_serving_the_old_version_while_a_new_one_fails(settings_for, bucket, moto_endpoint) -> None:
    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", [1])
    publish(build, "v2", [2])
    corrupt(bucket, moto_endpoint, "v2")
    from citywok.fetcher.sync import Fetcher

    want = node.data_dir / "desired"
    node.data_dir.mkdir(parents=True)
    now = [0.0]
    rec = Recorder()
    f = Follower(
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch,
        DesiredVersion(want, None),
        node.data_dir,
        rec,
        poll=5.0,
        clock=lambda: now[0],
    )
    st = f.step()
    assert st.served is None and "cannot read the desired version" in st.error
    want.write_text("v1\n")
    assert f.step() == Status("v1", "v1", None)
    want.write_text("v2")
    st = f.step()
    assert st.served == "v1" and st.desired == "v2"
    assert "v2: season_01.lmdb.tar.zst: sha256 mismatch: expected" in st.error
    requests_before = len(rec.seen)
    assert f.step().error == st.error  # within the backoff: no new attempt, same report
    assert len(rec.seen) == requests_before + 1
    publish(build, "v2", [2])  # the bucket is repaired
    now[0] += 5.0
    assert f.step() == Status("v2", "v2", None)
    assert layout.current_version(node.data_dir) == "v2"


def test_annotation_patch_sets_and_clears_the_error() -> None:
    bad = annotation_patch(Status("v1", "v2", "v2: sha256 mismatch"))
    assert bad == {"metadata": {"annotations": {SERVED_ANNOTATION: "v1", ERROR_ANNOTATION: "v2: sha256 mismatch"}}}
    ok = annotation_patch(Status("v2", "v2", None))
    assert ok["metadata"]["annotations"] == {SERVED_ANNOTATION: "v2", ERROR_ANNOTATION: None}
    assert len(annotation_patch(Status("v1", "v2", "x" * 5000))["metadata"]["annotations"][ERROR_ANNOTATION]) == 1024


def test_status_file_is_rewritten_only_on_change(tmp_path: Path) -> None:
    sf = StatusFile(tmp_path / "s" / "status.json")
    sf.report(Status("v1", "v1"))
    first = (tmp_path / "s" / "status.json").stat().st_mtime_ns
    sf.report(Status("v1", "v1"))
    assert (tmp_path / "s" / "status.json").stat().st_mtime_ns == first
    sf.report(Status("v1", "v2", "boom"))
    assert json.loads((tmp_path / "s" / "status.json").read_text())["fetch_error"] == "boom"


def test_sidecar_follows_two_version_changes_and_survives_a_bad_one(
    settings_for, bucket, moto_endpoint, proxy, tmp_path: Path
) -> None:
    build = settings_for("build")
    for v, seeds in (("v1", [1]), ("v2", [2]), ("v3", [3]), ("v4", [4])):
        publish(build, v, seeds)
    corrupt(bucket, moto_endpoint, "v3")
    node = tmp_path / "node"
    node.mkdir()
    desired = tmp_path / "configmap" / "version"
    desired.parent.mkdir()
    desired.write_text("v1")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "POD_", "DB_"))}
    env.update(
        DATA_DIR=str(node),
        S3_BUCKET=bucket,
        AWS_ENDPOINT_URL=proxy.url,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fetcher",
            "fetch",
            "--watch",
            "--version-file",
            str(desired),
            "--poll",
            "0.2",
            "--retries",
            "2",
            "--retry-delay",
            "0.01",
            "--metrics-port",
            str(port),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    status_file = node / "fetcher-status.json"

    def status() -> dict:
        try:
            return json.loads(status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    try:
        wait_for(lambda: status().get("served_version") == "v1", what="v1 served")
        desired.write_text("v2")
        wait_for(lambda: status().get("served_version") == "v2", what="v2 served")
        assert layout.current_version(node) == "v2"
        desired.write_text("v3")  # corrupted in the bucket
        wait_for(lambda: status().get("fetch_error"), what="the v3 failure reported")
        st = status()
        assert st["served_version"] == "v2" and st["desired_version"] == "v3"
        assert "season_01.lmdb.tar.zst: sha256 mismatch" in st["fetch_error"]
        assert layout.current_version(node) == "v2"
        assert not (node / "fingerprints" / "v3").exists()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'citywok_fetcher_served_version_info{version="v2"} 1.0' in metrics
        assert "citywok_fetcher_fetch_error 1.0" in metrics
        assert "citywok_fetcher_verify_failures_total" in metrics
        desired.write_text("v4")
        wait_for(lambda: status().get("served_version") == "v4", what="v4 served")
        assert status()["fetch_error"] is None
        downloaded = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        line = next(x for x in downloaded.splitlines() if x.startswith("citywok_fetcher_downloaded_bytes_total"))
        v4 = archives_dir(build.data_dir, "v4") / "season_01.lmdb.tar.zst"
        assert float(line.split()[1]) >= v4.stat().st_size
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert SECRET_KEY not in out and ACCESS_KEY not in out
