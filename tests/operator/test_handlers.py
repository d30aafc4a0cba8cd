"""The reconcile daemon's failure path without a cluster: a real API client talking to a loopback server
that answers its version and then fails every call, as an API server does while it is overloaded."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kopf
import kubernetes
import pytest
from citywok.operator import handlers, metrics
from citywok.operator.kube import Kube
from citywok.operator.reconcile import Options

DISCOVERY = {
    "/version": {"major": "1", "minor": "34", "gitVersion": "v1.34.4"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
}


class Overloaded(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in DISCOVERY:
            self.reply(200, DISCOVERY[self.path])
        else:
            self.reply(503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                             "reason": "ServiceUnavailable", "message": "the server is overloaded"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[Kube]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Overloaded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = kubernetes.client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Kube(kubernetes.client.ApiClient(config))
    finally:
        server.shutdown()
        server.server_close()


def errors(namespace: str, name: str) -> float:
    return sum(s.value for m in metrics.ERRORS.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels["namespace"] == namespace and s.labels["name"] == name)


def test_a_failed_reconcile_is_retried_by_kopf_with_a_growing_delay(kube: Kube) -> None:
    memo = kopf.Memo(kube=kube, options=Options(), wakers={}, resync=60.0, debounce=0.0)
    delays = []
    for retry in range(8):
        with pytest.raises(kopf.TemporaryError) as got:
            asyncio.run(handlers.reconciler(namespace="ns", name="db", memo=memo,
                                            logger=logging.getLogger("test"), retry=retry))
        delays.append(got.value.delay)
        assert "reconcile failed" in str(got.value) and "503" in str(got.value)
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert ("ns", "db") in memo.wakers, "kopf runs the daemon again: its waker stays"
    assert errors("ns", "db") == 8, "the error series are kept between runs"


def test_a_deleted_resource_drops_its_series_even_between_runs(kube: Kube) -> None:
    memo = kopf.Memo(kube=kube, options=Options(), wakers={}, resync=60.0, debounce=0.0)
    with pytest.raises(kopf.TemporaryError):
        asyncio.run(handlers.reconciler(namespace="ns", name="gone", memo=memo,
                                        logger=logging.getLogger("test"), retry=0))
    assert errors("ns", "gone") == 1
    asyncio.run(handlers.fingerprintdb_changed(namespace="ns", name="gone", memo=memo,
                                               event={"type": "DELETED", "object": {}}))
    assert errors("ns", "gone") == 0 and ("ns", "gone") not in memo.wakers
