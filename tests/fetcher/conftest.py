"""Fixtures for the fetcher tests: a real S3-compatible server (moto, over HTTP) and a fault proxy."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from faultproxy import FaultProxy
from moto.server import ThreadedMotoServer

from citywok.settings import Settings
from tests.support import free_port

_buckets = itertools.count()
ACCESS_KEY = "AKIACITYWOKTEST0001"
SECRET_KEY = "citywok-test-secret-do-not-log-0123456789"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "POD_NAME", "POD_NAMESPACE", "KUBECONFIG", "DB_VERSION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as p:
        yield p


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"citywok-test-{next(_buckets)}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings_for(bucket: str, proxy: FaultProxy, tmp_path: Path):
    """Settings for a machine with its own DATA_DIR, talking to the bucket through the proxy."""

    def make(name: str) -> Settings:
        return Settings(data_dir=tmp_path / name, s3_bucket=bucket, aws_endpoint_url=proxy.url, aws_region="us-east-1")

    return make
