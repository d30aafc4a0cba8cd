"""A small HTTP proxy in front of the S3 server that counts traffic and injects faults.

Faults are rules matched on method and path: answer with a status (a 5xx burst), send part of the
body then drop the connection, serve a body slowly (to kill a fetch mid-download), or replace the body.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


@dataclass
class Fault:
    kind: str  # "status" | "drop" | "slow"
    method: str = "GET"
    path_contains: str = ""
    times: int = 1  # how many matching requests it hits; -1 = all
    status: int = 503
    after: int = 0  # drop: body bytes sent before the connection is cut
    rate: float = 1e6  # slow: bytes per second

    def matches(self, method: str, path: str) -> bool:
        return self.times != 0 and method == self.method and self.path_contains in path


@dataclass
class Traffic:
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    body_bytes_out: int = 0  # response body bytes sent to clients
    body_bytes_in: int = 0  # request body bytes received from clients
    ranges: list[tuple[str, str]] = field(default_factory=list)  # path, Range header of ranged GETs

    def count(self, method: str, contains: str = "") -> int:
        return sum(1 for m, p, _s in self.requests if m == method and contains in p)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port
        self.faults: list[Fault] = []
        self.traffic = Traffic()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.traffic = Traffic()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.matches(method, path):
                    if f.times > 0:
                        f.times -= 1
                    return f
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._take_fault(method, path)
        if h.headers.get("Range"):
            with self.lock:
                self.traffic.ranges.append((path, h.headers["Range"]))
        if fault and fault.kind == "status":
            msg = b"<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>"
            if fault.status == 503:
                msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self._log_request(method, path, fault.status)
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(msg)))
            h.end_headers()
            h.wfile.write(msg)
            self._count(len(msg), length)
            return
        conn = http.client.HTTPConnection(self.up_host, self.up_port, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        # logged before the client sees the answer, so the log keeps the order the client acted in
        self._log_request(method, path, resp.status)
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                h.send_header(k, v)
        declared = int(resp.getheader("Content-Length") or len(data)) if method == "HEAD" else len(data)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        if method == "HEAD":
            self._count(0, length)
            return
        if fault and fault.kind == "drop" and resp.status < 300:
            h.wfile.write(data[: fault.after])
            h.wfile.flush()
            self._count(min(fault.after, len(data)), length)
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.kind == "slow" and resp.status < 300:
            step = max(1, int(fault.rate / 20))
            for i in range(0, len(data), step):
                try:
                    h.wfile.write(data[i : i + step])
                    h.wfile.flush()
                except OSError:
                    return
                self._record_bytes(len(data[i : i + step]))
                time.sleep(0.05)
            self._count(0, length)
            return
        h.wfile.write(data)
        self._count(len(data), length)

    def _record_bytes(self, n: int) -> None:
        with self.lock:
            self.traffic.body_bytes_out += n

    def _log_request(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.traffic.requests.append((method, path, status))

    def _count(self, out: int, inn: int) -> None:
        with self.lock:
            self.traffic.body_bytes_out += out
            self.traffic.body_bytes_in += inn
