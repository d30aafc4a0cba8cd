"""Packing: reproducible archives, their checksums, the manifest, and size."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import lmdb
import pytest
import zstandard
from citywok.fetcher import archive, manifest
from citywok.fetcher.pack import PackError, pack_version
from fetcher_testkit import make_season

from citywok import layout
from citywok.shardfile import shard_summary


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    vdir = layout.version_dir(data, "v1")
    make_season(vdir, 1, [1, 2, 3], seconds=60)
    make_season(vdir, 2, [4, 5], seconds=60)
    return data


def test_pack_is_reproducible_and_writes_checksums_and_manifest(shard_root: Path, tmp_path: Path) -> None:
    a = pack_version(shard_root, "v1", out_dir=tmp_path / "a", progress=False)
    b = pack_version(shard_root, "v1", out_dir=tmp_path / "b", progress=False)
    for name in ("season_01.lmdb.tar.zst", "season_02.lmdb.tar.zst", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m == a.manifest == b.manifest
    assert m["format"] == "citywok-fingerprints" and m["version"] == "v1"
    assert m["params_digest"] and m["params"]["sample_rate"] == 8000
    s1 = m["seasons"]["01"]
    assert [(k, s["season"], s["lmdb"]) for k, s in m["seasons"].items()] == [
        ("01", 1, "season_01.lmdb"),
        ("02", 2, "season_02.lmdb"),
    ]
    assert s1["archive"] == "season_01.lmdb.tar.zst"
    assert s1["episodes"] == ["S01E01", "S01E02", "S01E03"] and s1["episode_count"] == 3
    data = (tmp_path / "a" / s1["archive"]).read_bytes()
    assert s1["bytes"] == len(data) and s1["sha256"] == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "a" / "season_01.lmdb.tar.zst.sha256").read_text() == f"{s1['sha256']}  {s1['archive']}\n"
    meta = shard_summary(shard_root / "fingerprints/v1/season_01.lmdb")
    assert s1["hash_count"] == meta.hash_count > 1000


def test_archive_is_smaller_and_holds_only_the_season_folder(shard_root: Path, tmp_path: Path) -> None:
    res = pack_version(shard_root, "v1", out_dir=tmp_path, progress=False)
    assert res.archive_bytes <= 0.6 * res.lmdb_bytes, (res.archive_bytes, res.lmdb_bytes)
    with (
        open(tmp_path / "season_02.lmdb.tar.zst", "rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f) as z,
        tarfile.open(fileobj=z, mode="r|") as tar,
    ):
        members = [(m.name, m.mtime, m.uid, m.uname) for m in tar]
    assert members == [("season_02.lmdb", 0, 0, ""), ("season_02.lmdb/data.mdb", 0, 0, "")]


def test_gz_format_and_unpack_round_trip(shard_root: Path, tmp_path: Path) -> None:
    res = pack_version(shard_root, "v1", fmt="gz", out_dir=tmp_path / "gz", progress=False)
    again = pack_version(shard_root, "v1", fmt="gz", out_dir=tmp_path / "gz2", progress=False)
    assert [s["sha256"] for s in res.manifest["seasons"].values()] == [
        s["sha256"] for s in again.manifest["seasons"].values()
    ]
    out = archive.unpack_archive(tmp_path / "gz" / "season_01.lmdb.tar.gz", tmp_path / "unpacked")
    assert out.name == "season_01.lmdb"
    meta = shard_summary(out)
    assert meta.hash_count == res.manifest["seasons"]["01"]["hash_count"] >= (meta.postings_entries or 0) > 0


def test_unpack_refuses_foreign_members_and_truncation(tmp_path: Path) -> None:
    evil = tmp_path / "season_01.lmdb.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        tar.addfile(info)
    with pytest.raises(archive.ArchiveError, match="unexpected member"):
        archive.unpack_archive(evil, tmp_path / "out")
    src = tmp_path / "src"
    make_season(src, 1, [1], seconds=20)
    packed = archive.pack_season(src / "season_01.lmdb", tmp_path / "arch")
    cut = tmp_path / "cut" / packed.path.name
    cut.parent.mkdir()
    cut.write_bytes(packed.path.read_bytes()[: packed.bytes // 2])
    with pytest.raises(archive.ArchiveError, match="season_01.lmdb.tar.zst: damaged or truncated"):
        archive.unpack_archive(cut, tmp_path / "out2")


def test_pack_refuses_empty_version_and_mixed_parameters(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="nothing to pack"):
        pack_version(tmp_path, "v9", progress=False)
    vdir = layout.version_dir(tmp_path, "v2")
    make_season(vdir, 1, [1], seconds=10)
    shutil.copytree(vdir / "season_01.lmdb", vdir / "season_02.lmdb")
    env = lmdb.open(str(vdir / "season_02.lmdb"), max_dbs=4)
    db = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(b"meta", db=db))
        meta["params_digest"] = "something-else"
        txn.put(b"meta", json.dumps(meta).encode(), db=db)
    env.close()
    with pytest.raises(PackError, match="different fingerprint parameters"):
        pack_version(tmp_path, "v2", progress=False)


def test_unpacks_a_seed_style_tar_gz_with_lock_file_and_pax_headers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_season(src, 3, [7], seconds=10)
    data = (src / "season_03.lmdb" / "data.mdb").read_bytes()
    seed = tmp_path / "season_03.lmdb.tar.gz"
    with tarfile.open(seed, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src / "season_03.lmdb", arcname="./season_03.lmdb", recursive=False)
        info = tarfile.TarInfo("./season_03.lmdb/data.mdb")
        info.size = len(data)
        info.pax_headers = {"comment": "é" * 10}  # forces a pax record before the member
        tar.addfile(info, io.BytesIO(data))
        lock = tarfile.TarInfo("./season_03.lmdb/lock.mdb")
        lock.size = 8192
        tar.addfile(lock, io.BytesIO(b"\0" * 8192))
    out = archive.unpack_archive(seed, tmp_path / "out")
    assert (out / "data.mdb").read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["data.mdb"]
    assert list(shard_summary(out).episodes) == ["S03E07"]


def test_manifest_parse_names_the_bad_field() -> None:
    good = {
        "format": "citywok-fingerprints",
        "format_version": 1,
        "seasons": {
            "01": {
                "season": 1,
                "lmdb": "season_01.lmdb",
                "archive": "season_01.lmdb.tar.zst",
                "bytes": 10,
                "sha256": "a" * 64,
                "hash_count": 5,
            },
        },
    }
    assert [e.archive for e in manifest.parse(good, "m")] == ["season_01.lmdb.tar.zst"]
    cases = [
        ({"archive": "../../x.tar.zst"}, "unexpected names"),
        ({"archive": "season_01.lmdb.zip"}, "not a season archive"),
        ({"archive": "season_02.lmdb.tar.zst"}, "unexpected names"),
        ({"sha256": "nope"}, "is not a sha256"),
        ({"bytes": "ten"}, "season entry 0 is malformed"),
    ]
    for change, message in cases:
        bad = json.loads(json.dumps(good))
        bad["seasons"]["01"].update(change)
        with pytest.raises(manifest.ManifestError, match=message):
            manifest.parse(bad, "m")
    with pytest.raises(manifest.ManifestError, match="m: no seasons listed"):
        manifest.parse({**good, "seasons": {}}, "m")
    with pytest.raises(manifest.ManifestError, match="this fetcher reads 1"):
        manifest.parse({**good, "format_version": 9}, "m")


def test_unpack_refuses_a_member_larger_than_the_free_space_before_writing(tmp_path) -> None:
    """The size that counts is the member's own, from its tar header, not what a manifest claims."""
    import io
    import shutil
    import tarfile

    import zstandard
    from citywok.fetcher.archive import ArchiveError, unpack_archive

    huge = shutil.disk_usage(tmp_path).free * 2
    ti = tarfile.TarInfo("season_01.lmdb/data.mdb")
    ti.size = huge
    raw = io.BytesIO()
    raw.write(ti.tobuf(format=tarfile.GNU_FORMAT))
    raw.write(b"\0" * 4096)  # a few bytes of it: the whole would never fit anyway
    archive = tmp_path / "season_01.lmdb.tar.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    with pytest.raises(ArchiveError, match="not enough space"):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "season_01.lmdb" / "data.mdb").exists()


def test_the_packed_manifest_is_the_ingested_one_plus_the_archives(shard_root: Path, tmp_path: Path) -> None:
    """One shape: what `citywok ingest` keeps for a version is what pack publishes, with each archive added."""
    import shutil

    from citywok.matcher.store.ingest import write_manifest

    data = tmp_path / "data"
    shutil.copytree(shard_root, data)
    write_manifest(data, "v1")
    local = layout.read_manifest(layout.version_dir(data, "v1"))
    res = pack_version(data, "v1", out_dir=tmp_path / "out", progress=False)
    assert {k: v for k, v in res.manifest.items() if k != "seasons"} == {
        k: v for k, v in local.items() if k != "seasons"}
    assert sorted(res.manifest["seasons"]) == sorted(local["seasons"]) == ["01", "02"]
    for key, season in local["seasons"].items():
        packed = res.manifest["seasons"][key]
        assert {k: packed[k] for k in season} == season
        assert set(packed) - set(season) == {"archive", "bytes", "sha256", "data_bytes"}
    assert local["seasons"]["01"]["seconds"] == 180.0 and local["seasons"]["01"]["episode_count"] == 3
