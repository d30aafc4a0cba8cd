"""`citywok identify URL` and long files: a link downloaded as the server does, a timeline for long audio."""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from citywok.errors import CommandError

if TYPE_CHECKING:
    from pathlib import Path

    from citywok.matcher.service.linkdl import Source
    from citywok.matcher.store.library import Library

LINK = re.compile(r"^https?://", re.I)


def is_link(arg: str) -> bool:
    return bool(LINK.match(arg.strip()))


def _config():  # noqa: ANN202 - the server's settings (URL_ALLOW_HOSTS, URL_TIMEOUT, ...), read the same way
    from citywok.matcher.service.server import ServerConfig

    return ServerConfig.from_env()


def fetch(url: str) -> tuple[bytes, Source]:
    """The link's audio under the server's checks and limits; a refusal is the command's error, with its code."""
    from citywok.matcher.service import linkdl, urlfetch

    cfg = _config()
    try:
        got = linkdl.download_once(url.strip(), cfg.url_allow, cfg.url_timeout, cfg.max_upload_bytes,
                                   cfg.timeline_max_seconds)
    except urlfetch.UrlFetchError as e:
        raise CommandError(f"{url}: {e} [{e.code}]", 2) from None
    return got.data, got.source


def decode_from(clip: bytes | str | Path, rate: int, start: float) -> np.ndarray:
    """Mono PCM from ``start`` s on, up to the timeline limit (a clip is short anyway)."""
    from citywok.matcher.engine.decode import decode

    return decode(clip, rate, max_seconds=start + _config().timeline_max_seconds)[int(start * rate):]


def timeline(lib: Library, pcm: np.ndarray) -> dict[str, Any] | None:
    """Audio longer than a clip, as a timeline answer; None for a clip."""
    from citywok.matcher.service import timeline as tl

    if pcm.size <= tl.CLIP_SECONDS * lib.params.sample_rate:
        return None
    return tl.timeline_json(tl.timeline_pcm(lib, pcm), lib.version)


def source_line(source: Source) -> str:
    by = f" by {source.uploader}" if source.uploader else ""
    at = f", from {_clock(source.start_seconds)}" if source.start_seconds else ""
    return f"from: {source.title or source.webpage_url or source.url}{by} ({source.extractor}){at}"


def report_timeline(out: dict[str, Any], source: Source | None, as_json: bool, t0: float) -> int:
    out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if source is not None:
        out["source"] = source.to_json()
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        print(f"timeline of {_clock(out['clip_seconds'])}: {out['timeline_text']}")
        if source is not None:
            print(source_line(source))
    return 0 if out["match"] else 3


def _clock(seconds: float) -> str:
    from citywok.matcher.service.timeline import clock

    return clock(seconds)
