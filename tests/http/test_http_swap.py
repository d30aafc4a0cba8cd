"""Hot swap of the served version under concurrent load: no request fails, old versions close when drained."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests

from citywok import layout
from tests.http.support import build_version, clip_bytes
from tests.support import wait_for


def served(server) -> str:  # noqa: ANN001
    """The version /readyz says is served."""
    return requests.get(f"{server.url}/readyz", timeout=5).json()["db_version"]


def test_swaps_under_load_fail_no_request(server, data_dir) -> None:
    clip = clip_bytes(3, 25.0)
    stop = threading.Event()
    statuses: Counter[int] = Counter()
    versions: Counter[str] = Counter()
    wrong: list[dict] = []
    lock = threading.Lock()

    def load() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                r = s.post(f"{server.url}/api/v1/identify", files={"file": ("c.mp3", clip)}, timeout=30)
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        body = r.json()
                        versions[body["db_version"]] += 1
                        if body["episode_id"] != "S01E03":
                            wrong.append(body)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        swaps = 8
        for i in range(swaps):
            target = "v2" if i % 2 == 0 else "v1"
            layout.flip_current(data_dir, target)
            wait_for(lambda target=target: served(server) == target, 5, f"{target} served")
            answered = versions[target]  # and let the load meet it: one more answer from it
            wait_for(lambda target=target, answered=answered: versions[target] > answered, 10,
                     f"an answer from {target}")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(statuses) == {200}, statuses
    assert not wrong
    assert versions["v1"] > 0 and versions["v2"] > 0
    assert server.service.holder.swaps == swaps
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert f"citywok_swaps_total {float(swaps)}" in metrics
    wait_for(lambda: server.service.holder.draining() == [], 5, "the swapped-out version closed")


def test_a_version_that_cannot_open_leaves_the_old_one_serving(server, data_dir) -> None:
    bad = data_dir / "fingerprints" / "v3"
    (bad / "season_01.lmdb").mkdir(parents=True)
    (bad / "season_01.lmdb" / "data.mdb").write_bytes(b"not an lmdb file" * 100)
    layout.write_manifest(bad, {"version": "v3", "seasons": {}})
    layout.flip_current(data_dir, "v3")
    wait_for(lambda: server.service.metrics.registry.get_sample_value("citywok_version_load_errors_total"), 5,
             "the v3 load error counted")
    r = requests.get(f"{server.url}/readyz", timeout=5)
    assert r.status_code == 200 and r.json()["db_version"] == "v1"
    assert "v3" in (server.service.holder.last_error or "")
    assert "citywok_version_load_errors_total 1.0" in requests.get(f"{server.url}/metrics", timeout=5).text
    r = requests.post(f"{server.url}/api/v1/identify", files={"file": ("c.mp3", clip_bytes(1, 3.0))}, timeout=30)
    assert r.status_code == 200 and r.json()["episode_id"] == "S01E01" and r.json()["db_version"] == "v1"
    # a good version after the bad one is picked up
    build_version(data_dir, "v4", {2: "S01E02"})
    wait_for(lambda: served(server) == "v4", 5, "v4 served")


def test_served_version_closes_old_library_only_after_last_holder(data_dir) -> None:
    from citywok.matcher.service.swap import NotReady, ServedVersion

    holder = ServedVersion(data_dir)
    with pytest.raises(NotReady):
        with holder.acquire():
            pass
    assert holder.poll() is True and holder.current.library.version == "v1"
    assert holder.poll() is False  # nothing new
    with holder.acquire() as old:
        layout.flip_current(data_dir, "v2")
        assert holder.poll() is True
        assert holder.draining() == ["v1"]
        assert old.shards, "closed while a request still held it"
        assert old.episode_count() == 3
        layout.flip_current(data_dir, "v1")  # back to the draining version: reused, not reopened
        assert holder.poll() is True
        assert holder.current.library is old
        assert holder.draining() == []  # v2 had no holders: closed at once
    with holder.acquire() as lib:
        assert lib is old and lib.shards
    assert holder.swaps == 2
    holder.close()
    assert not old.shards
