"""The audio of a link, by yt-dlp: a video page of any site it supports, a direct media URL, an HLS playlist.

Runs in a download thread (links.py), never in an identify worker. Only an audio stream is fetched, the
smallest that serves (an audio-only format of at least ~40 kbit/s where the site offers one, else the
smallest format that has audio), under the link's :class:`~linkguard.Budget` of bytes and time. Every
request goes through :class:`~linkguard.CityWokGuardRH` and nothing else; the only downloaders used are
yt-dlp's own HTTP, HLS and DASH ones (Python, in this thread): no process is ever started, neither
ffmpeg nor a JavaScript runtime.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yt_dlp
import yt_dlp.downloader.hls as _hls
from citywok.matcher.service import urlfetch
from citywok.matcher.service.linkguard import Budget, CityWokGuardRH, Guard, Refused
from citywok.matcher.service.models import SourceInfo as Source
from citywok.matcher.service.urlfetch import LinkError
from yt_dlp.downloader import DashSegmentsFD, HlsFD, HttpFD, get_suitable_downloader
from yt_dlp.downloader.external import FFmpegFD
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError, UnsupportedError

AUDIO_FORMAT = "wa[abr>=?40]/ba/w[acodec!=?none]/w"
NATIVE = (HttpFD, HlsFD, DashSegmentsFD)


class _NoFFmpeg(FFmpegFD):
    """What the HLS downloader falls back to for a playlist it cannot read natively: a refusal."""

    @classmethod
    def available(cls, path: object = None) -> bool:
        return False

    def real_download(self, filename: str, info_dict: dict) -> bool:
        raise LinkError(422, "unsupported_url", "the stream needs features (encryption, live) that are not supported")


_hls.FFmpegFD = _NoFFmpeg  # the native HLS downloader must never hand a playlist to the ffmpeg binary


@dataclass
class Downloaded:
    data: bytes
    source: Source
    requests: int


class _Quiet:
    def debug(self, msg: str) -> None: ...
    def info(self, msg: str) -> None: ...
    def warning(self, msg: str) -> None: ...
    def error(self, msg: str) -> None: ...


class GuardedYDL(yt_dlp.YoutubeDL):
    """A YoutubeDL whose request director holds the guard's handler and nothing else."""

    def __init__(self, params: dict, guard: Guard) -> None:
        self.guard = guard
        super().__init__(params)

    @functools.cached_property
    def _request_director(self):  # noqa: ANN202 - yt-dlp's RequestDirector
        return self.build_request_director([functools.partial(CityWokGuardRH, guard=self.guard)])


def params(timeout: float, max_bytes: int) -> dict[str, Any]:
    return {
        "quiet": True, "no_warnings": True, "noprogress": True, "logger": _Quiet(), "color": "no_color",
        "format": AUDIO_FORMAT, "noplaylist": True, "playlist_items": "1",
        "proxy": "",  # never the environment's proxies: the guard checks the address it connects to
        "socket_timeout": timeout, "retries": 0, "fragment_retries": 0, "extractor_retries": 0,
        "file_access_retries": 0, "skip_unavailable_fragments": False, "concurrent_fragment_downloads": 4,
        "external_downloader": {"default": "native"}, "hls_prefer_native": True,
        "js_runtimes": {}, "remote_components": [],  # no JavaScript runtime process, nothing fetched to run
        "cachedir": False, "nopart": True, "overwrites": True, "max_filesize": max_bytes,
    }


def warm() -> None:
    """Load every extractor and compile its URL and embed patterns now, as a page's first extraction
    would (the generic extractor looks for every site's embeds in a page): that costs seconds, once."""
    ydl = GuardedYDL(params(1.0, 1 << 10), Guard(urlfetch.AllowList()))
    url = "https://example.invalid/watch?v=0"
    for ie in ydl._ies.values():
        ie.suitable(url)
        try:
            for _ in ie.extract_from_webpage(ydl, url, "<html></html>"):
                pass
        except Exception:  # noqa: BLE001, S112 - an extractor that needs more than an empty page
            continue


class Downloader:
    """One per download thread: a GuardedYDL kept between links (building one costs milliseconds)."""

    def __init__(self, allow: urlfetch.AllowList, timeout: float, max_bytes: int, max_seconds: float) -> None:
        self.guard = Guard(allow)
        self.max_seconds = max_seconds
        self.ydl = GuardedYDL(params(timeout, max_bytes), self.guard)

    def download(self, url: str, budget: Budget) -> Downloaded:
        """The link's audio bytes and where they came from; :class:`LinkError` says why not."""
        self.guard.budget = budget
        self.ydl.cookiejar.clear()  # one person's link does not carry cookies into another's
        try:
            info = self._info(url)
            return self._fetch(url, info, budget)
        except LinkError:
            raise
        except Exception as e:  # noqa: BLE001 - every yt-dlp failure becomes one of the stable codes
            raise classify(e, budget) from None

    def _info(self, url: str) -> dict:
        info = self.ydl.extract_info(url, download=False)
        if info.get("_type") == "playlist":
            entries = [e for e in info.get("entries") or [] if e]
            if not entries:
                raise LinkError(422, "no_media", "the link is a playlist with no videos in it")
            info = entries[0]
        if info.get("is_live"):
            raise LinkError(422, "unsupported_url", "live streams are not identified; link to a recorded video")
        duration = info.get("duration")
        if duration and duration > self.max_seconds:
            raise LinkError(413, "too_long", f"the video is {_clock(duration)} long; links of up to "
                            f"{_clock(self.max_seconds)} are identified: link to a shorter cut")
        if (info.get("acodec") or "") == "none":
            raise LinkError(415, "no_audio", "the video has no audio track to identify")
        return info

    def _fetch(self, url: str, info: dict, budget: Budget) -> Downloaded:
        fd_class = get_suitable_downloader(info, self.ydl.params)
        if fd_class not in NATIVE:
            raise LinkError(422, "unsupported_url", f"the stream's protocol ({info.get('protocol')}) is not supported")
        with tempfile.TemporaryDirectory(prefix="citywok-link-") as tmp:
            path = Path(tmp) / "audio"
            ok, _ = fd_class(self.ydl, self.ydl.params).download(str(path), info)
            if not ok or not path.exists():
                raise LinkError(502, "url_fetch_failed", "the site did not deliver the audio")
            data = path.read_bytes()
        source = Source(kind="url", url=url, title=info.get("title"),
                        uploader=info.get("uploader") or info.get("channel"), webpage_url=info.get("webpage_url"),
                        extractor=info.get("extractor_key") or info.get("extractor"), duration=info.get("duration"),
                        start_seconds=float(info.get("start_time") or start_time(url) or 0.0))
        return Downloaded(data, source, budget.requests)


def download_once(url: str, allow: urlfetch.AllowList, timeout: float, max_bytes: int, max_seconds: float
                  ) -> Downloaded:
    """One link, here and now (``citywok identify URL``), under the same checks and limits as the server's."""
    urlfetch.check_url(url, allow)
    return Downloader(allow, timeout, max_bytes, max_seconds).download(url, Budget(max_bytes, timeout))


LOGIN = re.compile(r"log ?in|sign in|cookies|registered users|account|authenticat|age[- ]restrict|confirm your age"
                   r"|members only|subscribers", re.I)
GONE = re.compile(r"private|unavailable|removed|deleted|does not exist|no longer|not found|taken down|terminated"
                  r"|copyright|blocked", re.I)


def _causes(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and len(out) < 10:
        out.append(cur)
        nxt = getattr(cur, "exc_info", None)
        nxt = nxt[1] if isinstance(nxt, tuple) and len(nxt) > 1 else None
        cur = nxt or getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
        if not isinstance(cur, BaseException):
            cur = None
    return out


def classify(e: BaseException, budget: Budget) -> LinkError:
    """yt-dlp's exceptions (and the guard's refusals inside them) as the link's stable error codes."""
    chain = _causes(e)
    for c in chain:
        if isinstance(c, LinkError):
            return c
        if isinstance(c, Refused):
            return LinkError(c.error.status, c.error.code, str(c.error))
    if budget.cancelled or any(isinstance(c, TimeoutError) for c in chain):
        return LinkError(504, "url_timeout", f"the site did not deliver the audio within {budget.seconds:g} s")
    text = " ".join(str(c) for c in chain)
    status = next((getattr(c, "status", None) for c in chain if isinstance(getattr(c, "status", None), int)), None)
    if any(isinstance(c, GeoRestrictedError) for c in chain):
        return LinkError(422, "video_unavailable", "the video is not available in the server's country")
    if any(isinstance(c, UnsupportedError) for c in chain):
        return LinkError(422, "unsupported_url", "found no video or audio at that link, and its site is not one "
                         "that is supported")
    if re.search(r"requested format is not available|no (video|audio) formats", text, re.I):
        return LinkError(415, "no_audio", "the video has no audio stream that can be downloaded")
    if status == 401 or LOGIN.search(text):
        return LinkError(422, "login_required", "the site needs a login to show this video; only public videos "
                         "can be identified")
    if status in (404, 410) or GONE.search(text):
        return LinkError(422, "video_unavailable", f"the video is gone or private ({_short(chain)})")
    if any(isinstance(c, (ExtractorError, DownloadError)) for c in chain):
        return LinkError(502, "url_fetch_failed", f"the site could not be read ({_short(chain)})")
    return LinkError(502, "url_fetch_failed", f"the link could not be downloaded ({_short(chain)})")


def _short(chain: list[BaseException]) -> str:
    msg = str(chain[-1]) or str(chain[0])
    msg = re.sub(r"^(ERROR: )?(\[[^]]+\] )?", "", msg)
    return msg[:200]


T_PARAM = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def start_time(url: str) -> float | None:
    """The start a link names (``t=90``, ``t=1m30s``, ``#t=1:30``, ``start=90``), in seconds."""
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    q.update(parse_qs(parts.fragment))
    raw = next((q[k][0] for k in ("t", "start", "time_continue") if q.get(k)), None)
    if not raw:
        return None
    raw = raw.strip().lower()
    if ":" in raw:
        try:
            secs = 0.0
            for p in raw.split(":"):
                secs = secs * 60 + float(p)
            return secs
        except ValueError:
            return None
    m = T_PARAM.match(raw)
    if not m or not any(m.groups()):
        return None
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
