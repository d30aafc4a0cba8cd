"""A killed `citywok ingest` leaves no decoder processes behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
from citywok.matcher import synth


def test_decoders_end_with_a_killed_ingest(tmp_path) -> None:
    eps = tmp_path / "eps"
    eps.mkdir()
    for n in range(1, 7):
        (eps / f"S01E{n:02d}.wav").write_bytes(synth.encode(synth.episode(n, 240.0, 8000), 8000, "wav"))
    proc = subprocess.Popen([sys.executable, "-m", "citywok", "ingest", str(eps), "--season", "1", "--workers", "2",
                             "--no-progress", "--data-dir", str(tmp_path / "data")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and len(children) < 2:
        children = psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.05)
    assert len(children) >= 2, "the decoders never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(children, timeout=5)
    for p in alive:
        p.kill()
    assert not alive, [p.pid for p in alive]
