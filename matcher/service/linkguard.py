"""yt-dlp's only way onto the network while it serves a link: a request handler that checks every address.

yt-dlp sends every request (the page, an extractor's API calls, the media, each HLS fragment) through
its networking framework (``yt_dlp.networking``); its HTTP and HLS downloaders open URLs the same way.
:class:`CityWokGuardRH` is a request handler of that framework, and the downloader of a link is given a
request director that holds nothing else (links.py), so there is no other handler to fall back to.

The guard sits where a connection is made, below urllib's redirect handling: each hop of a redirect
chain is a new connection and is checked on its own. The host is resolved once, every address it
resolves to must pass urlfetch's checks (or the allow list, by host, address and port), and the socket
connects to those very addresses, so a DNS answer that changes between check and connect cannot slip
through. Proxies are never used (a proxy would be the only address checked).

Each download has a :class:`Budget`: bytes read and a deadline, counted over every response it reads.
When the deadline passes, the budget's sockets are shut down, so a site that trickles bytes cannot hold
a download thread past it.
"""

from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import threading
import time
import urllib.request
import zlib
from http.cookiejar import CookieJar

from citywok.matcher.service import urlfetch
from yt_dlp.networking._urllib import (
    HTTPHandler,
    RedirectHandler,
    UrllibRH,
)
from yt_dlp.networking.common import Request, Response
from yt_dlp.networking.exceptions import RequestError

from citywok.errors import CityWokError

MAX_REDIRECTS = 5


class Refused(RequestError, CityWokError):
    """A request the guard stopped; ``error`` is the urlfetch error that says why (status and code)."""

    def __init__(self, error: urlfetch.UrlFetchError) -> None:
        super().__init__(str(error))
        self.error = error
        self.status, self.code = error.status, error.code


class Budget:
    """Bytes and time one download may use, shared by every request (and fragment thread) it makes."""

    def __init__(self, max_bytes: int, seconds: float) -> None:
        self.max_bytes = max_bytes
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.used = 0
        self.requests = 0
        self.cancelled = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0 or self.cancelled:
            raise Refused(urlfetch.FetchTimeout(f"the site did not deliver the audio within {self.seconds:g} s"))
        return left

    def spend(self, n: int) -> None:
        with self._lock:
            self.used += n
            over = self.used > self.max_bytes
        if over:
            raise Refused(urlfetch.TooLarge(f"the link's audio is larger than the {self.max_bytes}-byte limit"))
        self.remaining()

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            self.requests += 1

    def cancel(self) -> None:
        """Stop the download now: later requests are refused and open sockets shut down."""
        self.cancelled = True
        with self._lock:
            socks, self._sockets = self._sockets, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Guard:
    """Resolve, check, connect to what was checked."""

    def __init__(self, allow: urlfetch.AllowList) -> None:
        self.allow = allow
        self.budget = Budget(50 << 20, 15.0)

    def vetted(self, host: str, port: int) -> list[tuple]:
        """getaddrinfo results for ``host``, refused whole if any address is not allowed."""
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise Refused(urlfetch.UrlFetchError(f"{host} could not be resolved ({e.strerror})")) from None
        if not infos:
            raise Refused(urlfetch.UrlFetchError(f"{host} has no addresses"))
        for info in infos:
            try:
                urlfetch.check_address(host, ipaddress.ip_address(str(info[4][0]).split("%")[0]), self.allow, port)
            except urlfetch.UrlForbidden as e:
                raise Refused(e) from None
        return infos

    def connect(self, address: tuple[str, int], timeout: float | None = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """http.client's ``_create_connection``: a socket to a checked address of ``address``'s host."""
        host, port = address
        budget = self.budget
        err: OSError | None = None
        for family, kind, proto, _name, sockaddr in self.vetted(host, port):
            left = budget.remaining()
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(min(timeout, left) if isinstance(timeout, int | float) else left)
                budget.opened(sock)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                err = e
        assert err is not None
        budget.remaining()  # a shutdown by cancel() is the deadline, not a network error
        raise err


def _connection(cls: type[http.client.HTTPConnection], guard: Guard, *args: object, **kwargs: object
                ) -> http.client.HTTPConnection:
    conn = cls(*args, **kwargs)  # type: ignore[arg-type]
    conn._create_connection = guard.connect  # type: ignore[attr-defined]
    return conn


class _GuardedHTTP(HTTPHandler):
    """yt-dlp's HTTP handler with every connection made by the guard, and bounded decompression."""

    def __init__(self, guard: Guard, context: object = None) -> None:
        super().__init__(context=context)
        self.guard = guard

    def http_open(self, req):  # noqa: ANN001, ANN201
        return self.do_open(functools.partial(_connection, http.client.HTTPConnection, self.guard), req)

    def https_open(self, req):  # noqa: ANN001, ANN201
        return self.do_open(functools.partial(_connection, http.client.HTTPSConnection, self.guard), req,
                            context=self._context)

    def http_response(self, req, resp):  # noqa: ANN001, ANN201
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return resp
        if encoding not in ("gzip", "deflate", "x-gzip"):
            raise Refused(urlfetch.UrlFetchError(f"the site sent a body in an encoding not accepted ({encoding})"))
        budget = self.guard.budget
        raw = resp.read(budget.max_bytes + 1)
        budget.spend(len(raw))
        d = zlib.decompressobj(zlib.MAX_WBITS | 32 if encoding != "deflate" else -zlib.MAX_WBITS)
        body = d.decompress(raw, budget.max_bytes - budget.used + 1)
        budget.spend(len(body))
        fixed = urllib.request.addinfourl(io.BytesIO(body), resp.headers, resp.url, resp.code)
        fixed.msg = resp.msg
        return fixed

    https_request = HTTPHandler.http_request
    https_response = http_response


class _Redirects(RedirectHandler):
    max_redirections = MAX_REDIRECTS


class _Budgeted(Response):
    """A response whose every read is counted against the download's budget (it wraps yt-dlp's own:
    a response dropped unread would close the connection under the new one)."""

    def __init__(self, inner: Response, budget: Budget) -> None:
        super().__init__(fp=inner, url=inner.url, headers=inner.headers, status=inner.status,
                         reason=inner.reason)
        self.budget = budget

    def read(self, amt: int | None = None) -> bytes:
        if self.closed:
            return b""
        self.budget.remaining()
        if amt is None or amt < 0:
            amt = self.budget.max_bytes - self.budget.used + 1
        data = self.fp.read(amt)
        if self.fp.closed:
            self.close()
        self.budget.spend(len(data))
        return data


class CityWokGuardRH(UrllibRH):
    """A yt-dlp request handler that reaches only addresses urlfetch's checks allow (http and https only)."""

    RH_NAME = "citywok-guard"
    _SUPPORTED_URL_SCHEMES = ("http", "https")
    _SUPPORTED_PROXY_SCHEMES = None

    def __init__(self, *, guard: Guard, **kwargs: object) -> None:
        kwargs.pop("enable_file_urls", None)
        super().__init__(**kwargs)
        self.guard = guard

    def _check_proxies(self, proxies: dict) -> None:
        """Proxies are ignored, never used: the guard checks the address it connects to."""

    def _prepare_headers(self, _request: Request, headers: dict) -> None:
        headers["Accept-Encoding"] = "gzip, deflate"

    def _create_instance(self, proxies: dict, cookiejar: CookieJar | None, legacy_ssl_support: bool | None = None
                         ) -> urllib.request.OpenerDirector:
        opener = urllib.request.OpenerDirector()
        for h in (_GuardedHTTP(self.guard, self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
                  urllib.request.HTTPCookieProcessor(cookiejar), urllib.request.UnknownHandler(),
                  urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor(), _Redirects()):
            opener.add_handler(h)
        opener.addheaders = []
        return opener

    def _send(self, request: Request) -> Response:
        try:
            resp = super()._send(request)
        except Refused:
            raise
        except RequestError as e:
            refused = _refusal(e)
            if refused is not None:
                raise refused from None
            raise
        return _Budgeted(resp, self.guard.budget)


def _refusal(e: BaseException) -> Refused | None:
    """The guard's refusal somewhere in an exception's causes (urllib wraps what a connection raised)."""
    seen = 0
    cur: object = e
    while cur is not None and seen < 8:
        if isinstance(cur, Refused):
            return cur
        cur = getattr(cur, "cause", None) or getattr(cur, "reason", None) or getattr(cur, "__cause__", None)
        seen += 1
    return None
