"""Pack, push to a real S3-compatible server over HTTP, fetch onto a volume: bytes, dedupe, pruning."""

from __future__ import annotations

import json
import os

import pytest
from citywok.fetcher.pack import archives_dir, pack_version
from citywok.fetcher.push import push_version
from citywok.fetcher.store import RetryPolicy, Store, StoreError
from citywok.fetcher.sync import Fetcher, FetchError
from faultproxy import FaultProxy
from fetcher_testkit import make_season

from citywok import layout
from citywok.shardfile import shard_summary

FAST = RetryPolicy(sdk_attempts=2, attempts=6, base=0.01, cap=0.05)


def publish(settings, version: str, seasons: dict[int, list[int]]):
    """Ingest-like shards on the build machine, packed and pushed."""
    vdir = layout.version_dir(settings.data_dir, version)
    for season, seeds in seasons.items():
        make_season(vdir, season, seeds, seconds=20)
    pack_version(settings.data_dir, version, progress=False)
    store = Store(settings, FAST)
    return push_version(store, archives_dir(settings.data_dir, version), version, progress=False)


def test_push_then_fetch_round_trips_byte_for_byte(settings_for, proxy: FaultProxy) -> None:
    build, node = settings_for("build"), settings_for("node")
    res = publish(build, "v1", {1: [1, 2], 2: [3]})
    assert sorted(res.sent) == ["season_01.lmdb.tar.zst", "season_02.lmdb.tar.zst"]
    keys = [p for m, p, _ in proxy.traffic.requests if m == "PUT"]
    assert keys[-1].endswith("/fingerprints/v1/manifest.json"), "the manifest goes last"
    assert any(k.endswith("season_01.lmdb.tar.zst.sha256") for k in keys)

    out = Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    assert sorted(out.downloaded) == [1, 2] and out.reused == []
    assert layout.current_version(node.data_dir) == "v1"
    served = layout.version_dir(node.data_dir, "v1")
    # the compacted copy inside the archive holds the same records as the source shard
    for season in (1, 2):
        src = shard_summary(layout.version_dir(build.data_dir, "v1") / layout.season_name(season))
        got = shard_summary(served / layout.season_name(season))
        assert got == src
    archives = archives_dir(build.data_dir, "v1")
    assert (served / "manifest.json").read_bytes() == (archives / "manifest.json").read_bytes()
    assert not any(p.name.startswith(".") and p.is_dir() for p in layout.fingerprints_dir(node.data_dir).iterdir())
    # a second fetch of the served version downloads nothing
    again = Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    assert again.bytes_downloaded == 0 and again.downloaded == []


def test_unchanged_seasons_are_neither_pushed_nor_fetched_again(settings_for, proxy: FaultProxy) -> None:
    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", {1: [1, 2], 2: [3], 3: [4]})
    fetcher = Fetcher(Store(node, FAST), node.data_dir, progress=False)
    fetcher.fetch("v1")
    # pushing the same version again sends no archive bytes
    proxy.reset()
    again = push_version(Store(build, FAST), archives_dir(build.data_dir, "v1"), "v1", progress=False)
    assert again.sent == [] and len(again.skipped) == 3
    assert proxy.traffic.count("PUT", ".tar.zst?") == 0 and proxy.traffic.count("PUT", ".tar.zst") == 3
    # v2: season 2 gains an episode, seasons 1 and 3 are copied from v1 unchanged
    v1, v2 = layout.version_dir(build.data_dir, "v1"), layout.version_dir(build.data_dir, "v2")
    for s in (1, 3):
        import shutil

        shutil.copytree(v1 / layout.season_name(s), v2 / layout.season_name(s))
    make_season(v2, 2, [3, 5], seconds=20)
    pack_version(build.data_dir, "v2", progress=False)
    proxy.reset()
    res = push_version(Store(build, FAST), archives_dir(build.data_dir, "v2"), "v2", progress=False)
    assert res.sent == ["season_02.lmdb.tar.zst"]
    assert sorted(res.copied) == ["season_01.lmdb.tar.zst", "season_03.lmdb.tar.zst"]
    m2 = json.loads((archives_dir(build.data_dir, "v2") / "manifest.json").read_text())
    s2 = m2["seasons"]["02"]
    assert proxy.traffic.body_bytes_in < s2["bytes"] + 20_000, "only season 2 travelled"

    proxy.reset()
    out = fetcher.fetch("v2")
    assert out.downloaded == [2] and sorted(out.reused) == [1, 3]
    assert out.bytes_downloaded == s2["bytes"]
    gets = [p for m, p, _ in proxy.traffic.requests if m == "GET" and ".tar.zst" in p]
    assert len(gets) == 1 and "season_02" in gets[0]
    assert layout.current_version(node.data_dir) == "v2"
    n1, n2 = (layout.version_dir(node.data_dir, v) for v in ("v1", "v2"))
    assert os.stat(n1 / "season_01.lmdb/data.mdb").st_ino == os.stat(n2 / "season_01.lmdb/data.mdb").st_ino
    assert list(shard_summary(n2 / "season_02.lmdb").episodes) == ["S02E03", "S02E05"]


def test_keep_prunes_old_versions_but_never_current(settings_for) -> None:
    build, node = settings_for("build"), settings_for("node")
    for i, v in enumerate(("v1", "v2", "v3")):
        publish(build, v, {1: [10 + i]})
    fetcher = Fetcher(Store(node, FAST), node.data_dir, keep=2, progress=False)
    for v in ("v1", "v2", "v3"):
        fetcher.fetch(v)
    fp = layout.fingerprints_dir(node.data_dir)
    assert sorted(p.name for p in fp.iterdir() if p.is_dir() and not p.is_symlink()) == ["v2", "v3"]
    fetcher.keep = 1
    fetcher.fetch("v2")  # rolling back to v2: it stays, and the fetched one stays too
    assert layout.current_version(node.data_dir) == "v2"
    assert sorted(p.name for p in fp.iterdir() if p.is_dir() and not p.is_symlink()) == ["v2", "v3"]


def test_missing_version_and_missing_bucket_are_clear_errors(settings_for) -> None:
    node = settings_for("node")
    with pytest.raises(
        StoreError,
        match=r"version v7 is not in the bucket: no s3://citywok-test-\d+/fingerprints/v7/manifest.json",
    ):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v7")
    assert layout.current_version(node.data_dir) is None
    with pytest.raises(layout.LayoutError, match="invalid version name"):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("../etc")


def test_refuses_when_the_disk_lacks_room(settings_for, bucket: str, moto_endpoint: str) -> None:
    build, node = settings_for("build"), settings_for("node")
    publish(build, "v1", {1: [1]})
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    doc = json.loads((archives_dir(build.data_dir, "v1") / "manifest.json").read_text())
    doc["seasons"]["01"]["data_bytes"] = 1 << 60  # a season far bigger than any disk
    s3.put_object(Bucket=bucket, Key="fingerprints/v1/manifest.json", Body=json.dumps(doc).encode())
    with pytest.raises(FetchError, match=r"not enough disk space for version v1 .* need \d+\.\d MB .* MB free"):
        Fetcher(Store(node, FAST), node.data_dir, progress=False).fetch("v1")
    assert layout.current_version(node.data_dir) is None
