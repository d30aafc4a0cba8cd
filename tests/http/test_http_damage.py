"""Damaged shard files: a clear error and the other seasons keep answering, never a SIGBUS.

Every process is a real one (`citywok serve`, `citywok identify`, a shard opened in a fresh
interpreter) so that a SIGBUS shows as an exit by signal instead of killing the test run.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from citywok import layout
from tests.http.procserver import ServeProcess
from tests.http.support import SEASON1, build_version, clip_bytes
from tests.support import private_copy

SEASON2 = {4: "S02E01", 5: "S02E02"}


@pytest.fixture(scope="module")
def two_seasons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("two-seasons")
    build_version(d, "v1", SEASON2, season=2, flip=False)
    build_version(d, "v1", SEASON1, season=1)
    return d


@pytest.fixture
def data(two_seasons: Path, tmp_path: Path) -> Path:
    return private_copy(two_seasons, tmp_path / "data")


def _data_file(data: Path, season: int) -> Path:
    return layout.version_dir(data, "v1") / layout.season_name(season) / "data.mdb"


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def _identify(url: str, seed: int, start: float = 12.0) -> requests.Response:
    return requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(seed, start))}, timeout=30)


def _citywok(*args: str, data: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("citywok")
    return subprocess.run([str(exe), *args], env={**os.environ, "DATA_DIR": str(data)}, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("size", [8192, 20000, -4096])
def test_identify_cli_leaves_out_a_truncated_season(data: Path, tmp_path: Path, size: int) -> None:
    f = _data_file(data, 2)
    _truncate(f, size if size > 0 else f.stat().st_size + size)
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(clip_bytes(2, 9.0))
    r = _citywok("identify", str(clip), "--json", data=data)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert '"episode_id": "S01E02"' in r.stdout
    assert "season 2" in r.stderr and "truncated" in r.stderr


def test_serve_starts_without_a_truncated_season_and_names_it(data: Path) -> None:
    _truncate(_data_file(data, 2), 8192)
    with ServeProcess(data) as s:
        ready = requests.get(f"{s.url}/readyz", timeout=5).json()
        assert ready["seasons"] == [1] and "truncated" in ready["failed_seasons"]["2"]
        assert "2" in requests.get(f"{s.url}/api/v1/test", timeout=5).json()["failed_seasons"]
        r = _identify(s.url, 2, 9.0)
        assert r.status_code == 200 and r.json()["episode_id"] == "S01E02", r.text


def test_a_season_truncated_while_serving_is_dropped_and_the_rest_answer(data: Path) -> None:
    with ServeProcess(data) as s:
        assert _identify(s.url, 4).json()["episode_id"] == "S02E01"
        _truncate(_data_file(data, 2), 8192)
        answers = [_identify(s.url, seed) for seed in (1, 2, 3, 1)]
        assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
        assert [r.json()["episode_id"] for r in answers] == ["S01E01", "S01E02", "S01E03", "S01E01"]
        ready = requests.get(f"{s.url}/readyz", timeout=5).json()
        assert ready["seasons"] == [1] and "2" in ready["failed_seasons"]
        assert "exited" not in s.log() and s.proc.poll() is None


def test_a_season_folder_removed_while_serving_is_noticed(data: Path) -> None:
    with ServeProcess(data) as s:
        shutil.rmtree(_data_file(data, 2).parent)
        s.wait("/readyz")
        deadline = time.monotonic() + 10  # the next look at the seasons (every 0.1 s here) drops it
        while (ready := requests.get(f"{s.url}/readyz", timeout=5).json())["seasons"] != [1]:
            assert time.monotonic() < deadline, ready
            time.sleep(0.05)
        assert "removed" in ready["failed_seasons"]["2"]
        assert _identify(s.url, 3).json()["episode_id"] == "S01E03"


def test_a_manifest_removed_while_serving_keeps_the_version_answering(data: Path) -> None:
    with ServeProcess(data) as s:
        (layout.version_dir(data, "v1") / layout.MANIFEST).unlink()
        answers = [_identify(s.url, seed) for seed in (1, 4)]
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        assert [r.json()["episode_id"] for r in answers] == ["S01E01", "S02E01"]
        assert requests.get(f"{s.url}/readyz", timeout=5).status_code == 200
        deadline = time.monotonic() + 10  # the next look at `current` (every 0.1 s here) reports it
        while True:
            test = requests.get(f"{s.url}/api/v1/test", timeout=5).json()
            if layout.MANIFEST in (test["last_error"] or "") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert layout.MANIFEST in (test["last_error"] or "")


_OPEN_EVERYTHING = r"""
import sys
from citywok.shardfile import ShardFileError, shard_summary
from citywok.matcher.store.shard import Shard, ShardError
try:
    with Shard.open(sys.argv[1]) as s:
        s.check(); s.episodes(); s.get_shared(); s.all_postings()
except ShardError:
    pass
try:
    shard_summary(sys.argv[1])
except ShardFileError:
    pass
"""


def test_no_truncation_or_damage_of_a_shard_file_kills_the_reader(data: Path, tmp_path: Path) -> None:
    """Truncations at page boundaries and between them, and bytes overwritten in the pages LMDB
    follows (meta, branch and leaf pages, overflow headers): each opens as an error or reads as data."""
    src = _data_file(data, 1)
    raw = src.read_bytes()
    rng = random.Random(19)
    page = 4096
    cases: list[bytes] = [raw[:n] for n in (0, 100, page, 2 * page, 2 * page + 17, len(raw) // 2, len(raw) - 1)]
    for _ in range(24):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            pg = rng.choice([0, 1, *range(2, min(12, len(raw) // page))])
            b[pg * page + rng.randrange(64 if rng.random() < 0.7 else page)] = rng.randrange(256)
        cases.append(bytes(b))
    target = tmp_path / "case" / "season_01.lmdb"
    deaths = []
    for i, case in enumerate(cases):
        shutil.rmtree(target.parent, ignore_errors=True)
        target.mkdir(parents=True)
        (target / "data.mdb").write_bytes(case)
        r = subprocess.run([sys.executable, "-c", _OPEN_EVERYTHING, str(target)], capture_output=True, text=True,
                           timeout=60)
        if r.returncode < 0:  # killed by a signal (SIGBUS, SIGSEGV)
            deaths.append((i, r.returncode, r.stderr[-300:]))
    assert not deaths
