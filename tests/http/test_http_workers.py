"""Identify in worker processes: they answer, they go away with the server, and a dead one costs only
the requests it held."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import time

import psutil
import requests

from tests.http.support import clip_bytes
from tests.http.test_http_serve import _serve, _wait_ready
from tests.support import free_port


def _workers(url: str) -> int:
    return requests.get(f"{url}/api/v1/test", timeout=10).json()["workers"]


def _serve_with_workers(data_dir) -> tuple[subprocess.Popen, str, list[psutil.Process]]:
    """`citywok serve` with 2 workers, ready; its URL and child processes (workers and fork server)."""
    port = free_port()
    proc = _serve(data_dir, port, WORKERS="2")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc)
        assert _workers(url) == 2
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # two workers and the fork server they came from
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, url, children


def test_serve_identifies_in_worker_processes_that_end_with_it(data_dir) -> None:
    proc, url, children = _serve_with_workers(data_dir)
    try:
        clip = clip_bytes(2, 20.0)
        with cf.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip)},
                                                            timeout=30), range(8)))
        assert all(r.status_code == 200 and r.json()["episode_id"] == "S01E02" for r in answers)
        busy = [c for c in children if c.cpu_times().user > 0.05]
        assert len(busy) >= 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"worker processes outlived the server: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dead_worker_fails_only_the_requests_it_held(start_server, data_dir) -> None:
    server = start_server(data_dir, workers=2)
    url = server.url
    clip = clip_bytes(1, 12.0)

    def ask() -> requests.Response:
        return requests.post(f"{url}/api/v1/identify", files={"file": ("c.mp3", clip)}, timeout=30)

    assert ask().status_code == 200
    pids = server.service.identify_pool.pids()
    assert len(pids) == 2 and os.getpid() not in pids
    for pid in pids:  # stopped, the workers cannot answer: the next requests are surely in flight ...
        os.kill(pid, signal.SIGSTOP)
    with cf.ThreadPoolExecutor(3) as pool:
        held = [pool.submit(ask) for _ in range(3)]
        time.sleep(0.5)
        for pid in pids:  # ... when their workers die
            os.kill(pid, signal.SIGKILL)
        lost = [f.result(30) for f in held]
    assert [r.status_code for r in lost] == [503] * 3
    assert lost[0].json()["error"] == "worker_lost" and "retry" in lost[0].json()["message"]
    assert lost[0].headers["Retry-After"] == "1"
    after = [ask() for _ in range(3)]  # a new pool answers
    assert [r.status_code for r in after] == [200] * 3 and after[0].json()["episode_id"] == "S01E01"
    assert set(server.service.identify_pool.pids()).isdisjoint(pids)
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert "citywok_identify_workers_lost_total 3.0" in metrics
    assert 'citywok_identify_total{outcome="server_error"} 3.0' in metrics, "a lost worker is the server's fault"


def test_workers_end_when_their_server_is_killed(data_dir) -> None:
    proc, _url, children = _serve_with_workers(data_dir)
    proc.kill()  # no drain, no pool shutdown: the workers notice on their own
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"worker processes outlived a killed server: {alive}"
