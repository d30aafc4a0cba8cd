"""Progress bars that suit where stderr goes: a live bar on a terminal, plain periodic lines in a log."""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL = 10.0  # seconds between lines when stderr is a file or a pipe


class _Lines:
    """A stream for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, s: str) -> int:
        text = s.replace("\r", "").strip()
        if text:
            self.out.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.out.flush()


def bar(iterable: Any = None, *, file: IO[str] | None = None, **kw: Any) -> tqdm:
    """``tqdm`` on stderr; when that is not a terminal, one line every LOG_INTERVAL seconds and one at the end."""
    out = file or sys.stderr
    if not (hasattr(out, "isatty") and out.isatty()):
        if kw.get("disable", False) is None:  # tqdm's "only on a terminal"
            kw["disable"] = True
        kw.setdefault("mininterval", LOG_INTERVAL)
        kw.setdefault("maxinterval", LOG_INTERVAL)
        kw.setdefault("ncols", 100)
        kw.setdefault("ascii", True)
        out = _Lines(out)
    return tqdm(iterable, file=out, **kw)
