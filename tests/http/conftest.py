"""Fixtures for the HTTP tests: generated fingerprint versions and the real server on a loopback port."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from citywok.matcher.service.server import ServerConfig

from citywok import layout
from tests.http.support import SEASON1, ServerThread, build_version
from tests.support import private_copy


@pytest.fixture(scope="session")
def built_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with v1 and v2 (same season-1 episodes), `current` -> v1. Copy it before writing."""
    d = tmp_path_factory.mktemp("versions")
    build_version(d, "v1", SEASON1)
    shutil.copytree(d / "fingerprints" / "v1", d / "fingerprints" / "v2")
    layout.write_manifest(d / "fingerprints" / "v2", {**layout.read_manifest(d / "fingerprints" / "v2"),
                                                       "version": "v2"})
    return d


@pytest.fixture
def data_dir(built_versions: Path, tmp_path: Path) -> Path:
    """A private copy of the built versions (the server may write into it)."""
    return private_copy(built_versions, tmp_path / "data")


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Start servers with ServerConfig fields as keywords; all are stopped after the test."""
    started: list[ServerThread] = []

    def start(data_dir: Path, **kw: object) -> ServerThread:
        kw.setdefault("poll_interval", 0.1)
        s = ServerThread(ServerConfig(data_dir=Path(data_dir), host="127.0.0.1", **kw)).start()
        started.append(s)
        return s

    yield start
    for s in started:
        with contextlib.suppress(Exception):
            s.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerThread], data_dir: Path) -> ServerThread:
    return start_server(data_dir)
