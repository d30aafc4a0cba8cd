"""`citywok serve` as a real subprocess (its own signals, its own crashes), for the fault tests and
bench.faults: a SIGBUS or a worker death shows as what it is, not as a failure inside pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support import free_port


class ServeProcess:
    """One `citywok serve` on a loopback port; its output goes to a log file beside the data."""

    def __init__(self, data_dir: Path, log: Path | None = None, **env: str) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or self.data_dir.with_name(self.data_dir.name + f"-serve-{self.port}.log")
        self.env = {"MAX_CONCURRENCY": "2", "WORKERS": "1", "POLL_INTERVAL": "0.1", **env}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30, ready: bool = True) -> ServeProcess:
        citywok = Path(sys.executable).with_name("citywok")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [str(citywok), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
             str(self.data_dir)], env={**os.environ, **self.env}, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.wait("/readyz" if ready else "/healthz", timeout)
        return self

    def wait(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"citywok serve exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered 200: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """The server and its worker processes."""
        import psutil

        assert self.proc is not None
        p = psutil.Process(self.proc.pid)
        return [p.pid, *(c.pid for c in p.children(recursive=True))]

    def kill(self) -> None:
        """SIGKILL the server's whole process group (workers and the forkserver too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
