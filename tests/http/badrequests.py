"""Bad requests, generated (hypothesis strategies) and sent as raw bytes, for the fuzz test and bench.faults.

Each request is built from the parts a client controls: the route, the Content-Type and its
boundary and charset, the multipart framing (boundaries missing, long, mismatched or never closed;
part headers long or odd; transfer encodings and charsets no one knows; parts nested deep), JSON
(unknown charsets, deep nesting), ingest fields and bearer tokens with non-ASCII bytes, and audio
headers that lie (255 channels, a 2 GHz sample rate), SDP, concat lists and playlists.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from hypothesis import strategies as st

TOKEN = "fuzz-token"
ROUTES = ("/api/v1/identify", "/api/v1/ingest")
CHARSETS = ("utf-8", "latin-1", "x-no-such-charset", "utf-7", "", "utf-16", "ebcdic-xx", "ascii")
ENCODINGS = ("", "base64", "quoted-printable", "binary", "8bit", "x-unknown", "gzip", "uuencode")
NAMES = ("file", "url", "episode_id", "season", "title", "", "fi\u00e9le", "x" * 300)


@dataclass(frozen=True)
class Raw:
    """One HTTP request as bytes, and what it was meant to exercise."""

    data: bytes
    kind: str


def wav_header(channels: int, rate: int, bits: int, frames: int) -> bytes:
    block = max(1, channels * bits // 8) & 0xFFFF
    data = bytes(min(frames * block, 1 << 16))
    fmt = struct.pack("<IHHIIHH", 16, 1, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    head = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + fmt
    return head + b"data" + struct.pack("<I", len(data)) + data


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """What a file or url part holds."""
    kind = draw(st.sampled_from(["bytes", "wav", "sdp", "concat", "hls", "text"]))
    if kind == "wav":
        return wav_header(draw(st.sampled_from([0, 1, 2, 8, 64, 255, 65535])),
                          draw(st.sampled_from([0, 1, 8000, 44100, 2_000_000_000, 0xFFFFFFFF])),
                          draw(st.sampled_from([0, 8, 16, 24, 32, 64, 7])), draw(st.integers(0, 4000)))
    if kind == "sdp":
        port = draw(st.integers(1024, 65000))
        return (f"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP 0\r\n").encode()
    if kind == "concat":
        return b"ffconcat version 1.0\nfile '/etc/hostname'\n"
    if kind == "hls":
        return b"#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n"
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=2048))


@st.composite
def part(draw: st.DrawFn, boundary: bytes, depth: int = 0) -> bytes:
    name = draw(st.sampled_from(NAMES))
    headers = [f'Content-Disposition: form-data; name="{name}"'.encode()]
    if draw(st.booleans()):
        headers[0] += b'; filename="' + draw(st.sampled_from([b"c.mp3", b"", b"x.sdp", b"\xff\xfe.wav"])) + b'"'
    if draw(st.booleans()):
        headers.append(b"Content-Type: text/plain; charset=" + draw(st.sampled_from(CHARSETS)).encode())
    if draw(st.booleans()):
        headers.append(b"Content-Transfer-Encoding: " + draw(st.sampled_from(ENCODINGS)).encode())
    if draw(st.integers(0, 9)) == 0:
        headers.append(b"X-Long: " + b"a" * draw(st.sampled_from([100, 9000, 70000])))
    if draw(st.integers(0, 9)) == 0:
        headers.append(draw(st.binary(max_size=100)).replace(b"\r\n", b""))
    if depth < 3 and draw(st.integers(0, 6)) == 0:
        inner = boundary + b"x"
        nested = draw(st.integers(1, 300)) if depth == 0 else 1
        body = b""
        for _ in range(nested):
            body = (b"--" + inner + b"\r\nContent-Type: multipart/mixed; boundary=" + inner + b"\r\n\r\n" + body
                    + b"\r\n--" + inner + b"--\r\n")
        headers.append(b"Content-Type: multipart/mixed; boundary=" + inner)
    else:
        body = draw(payloads())
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


@st.composite
def multipart(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(Content-Type value, body) of a multipart form with its framing bent."""
    boundary = draw(st.sampled_from([b"b0undary", b"", b"x" * 71, b"x" * 2000, b'"quoted"', b"a b", b"\xff\xfe"]))
    declared = boundary if draw(st.integers(0, 3)) else draw(st.sampled_from([b"other", b"", b"b0und"]))
    ctype = b"multipart/form-data" + (b"; boundary=" + declared if draw(st.integers(0, 5)) else b"")
    parts = [draw(part(boundary)) for _ in range(draw(st.integers(0, 4)))]
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    if draw(st.integers(0, 2)):
        body += b"--" + boundary + b"--\r\n"
    if draw(st.integers(0, 3)) == 0:
        body = body[: draw(st.integers(0, max(0, len(body))))]  # framing cut short
    return ctype, body


@st.composite
def json_body(draw: st.DrawFn) -> tuple[bytes, bytes]:
    charset = draw(st.sampled_from(CHARSETS))
    ctype = b"application/json" + (b"; charset=" + charset.encode() if charset else b"")
    kind = draw(st.sampled_from(["deep", "bytes", "value", "url"]))
    if kind == "deep":
        n = draw(st.sampled_from([100, 999, 2000, 5000, 20000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return ctype, (opener * n + "1" + closer * n).encode()
    if kind == "value":
        return ctype, draw(st.sampled_from([b"null", b"[]", b"1", b'"x"', b'{"url": 5}', b'{"url": ["a"]}']))
    if kind == "url":
        url = draw(st.sampled_from(["http://127.0.0.1/", "file:///etc/passwd", "http://[::1]/", "gopher://x",
                                    "http://[2002:7f00:1::1]/", "http://127.0.0.1/" + "a" * 5000, ""]))
        return ctype, ('{"url": "' + url + '"}').encode()
    return ctype, draw(st.binary(max_size=1000))


@st.composite
def bad_requests(draw: st.DrawFn) -> Raw:
    route = draw(st.sampled_from(ROUTES))
    kind = draw(st.sampled_from(["multipart", "multipart", "json", "form", "raw"]))
    if kind == "multipart":
        ctype, body = draw(multipart())
    elif kind == "json":
        ctype, body = draw(json_body())
    elif kind == "form":
        ctype = b"application/x-www-form-urlencoded; charset=" + draw(st.sampled_from(CHARSETS)).encode()
        body = draw(st.sampled_from([b"url=%ff%fe", b"url=" + b"a" * 3000, b"season=%D9%A1&episode_id=x", b"=&&="]))
    else:
        ctype = draw(st.sampled_from([b"audio/wav", b"", b"text/plain", b"multipart/mixed"]))
        body = draw(payloads())
    headers = [b"POST " + route.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if ctype:
        headers.append(b"Content-Type: " + ctype)
    if route.endswith("ingest"):
        token = draw(st.sampled_from([TOKEN.encode(), b"", "tökén".encode(), b"\xff\xfe\x80", "Ｔ".encode()]))
        headers.append(b"Authorization: Bearer " + token)
    headers.append(b"Content-Length: " + str(len(body)).encode())
    return Raw(b"\r\n".join(headers) + b"\r\n\r\n" + body, f"{route.rsplit('/', 1)[1]}/{kind}")


def send(port: int, raw: Raw, timeout: float = 30.0) -> int | None:
    """Send one request; the status it got, or None if the server closed the connection unanswered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw.data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was read: the answer is still there to read
        head = b""
        try:
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        except ConnectionResetError:
            pass
    line = head.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None
