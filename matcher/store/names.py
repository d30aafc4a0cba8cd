"""Episode ids and titles from file names, and titles from a CSV or JSON file (``ingest --titles``).

File names carry a title in two common shapes, and the parser knows both:

    Show Name - S01E02 - The Title.mkv              (media-library naming)
    Show.Name.S01E02.The.Title.720p.WEB-DL.x264-GRP.mkv   (scene releases: dots, then release tags)
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from citywok.errors import CityWokError

EPISODE_RE = re.compile(r"[Ss](\d{1,3})[ ._-]?[Ee](\d{1,4})", re.ASCII)  # ASCII: no fullwidth look-alikes
# release tags: where a scene name's title ends (resolution, source, codec, audio, edition words)
_TAG_RE = re.compile(
    r"^(\d{3,4}[pi]|4k|uhd|hdr\d*|dv|web(-?dl|-?rip)?|hdtv|pdtv|sdtv|dvd(rip|scr)?|b[dr]rip|blu-?ray|remux|"
    r"amzn|nf|hulu|dsnp|hmax|atvp|[xh]\.?26[45]|hevc|avc|xvid|divx|aac(2\.0)?|ac3|e?ac-?3|dd[p+]?\d?(\.\d)?|"
    r"flac|mp3|opus|\d\.\d|proper|repack|internal|real|extended|uncut|multi|subbed|dubbed|10bit|8bit)$",
    re.IGNORECASE,
)


class TitlesError(CityWokError, ValueError):
    """A --titles file that cannot be read as episode titles."""

    code = "bad_titles"


def episode_id_for(path: Path) -> str:
    """``S01E02`` when the name says so, else the file name without its suffix."""
    m = EPISODE_RE.search(Path(path).stem)
    if m:
        return f"S{int(m.group(1)):02d}E{int(m.group(2)):02d}"
    return Path(path).stem


def title_for(path: Path) -> str | None:
    """The episode title a file name carries after its ``SxxEyy``, or None when it carries none."""
    stem = Path(path).stem
    m = EPISODE_RE.search(stem)
    if not m:
        return None
    rest = stem[m.end():]
    if re.match(r"\s*-\s", rest) or " " in rest.strip(" -"):
        title = rest.strip().lstrip("-").strip()  # "Show - S01E02 - Title": spaces mean the name is literal
        title = re.split(r"\s[\[(]", title)[0]  # "Title [1080p]" or "Title (720p)"
        return title.strip() or None
    words: list[str] = []
    for word in re.split(r"[._ ]", rest.strip(" ._-")):
        if not word or _TAG_RE.match(word) or _TAG_RE.match(word.split("-")[0]):
            break
        words.append(word)
    return " ".join(words) or None


def parse_titles(text: str, suffix: str) -> dict[str, str]:
    """Episode id -> title from JSON (``{"S01E02": "Title"}`` or ``[{"episode_id", "title"}]``) or CSV
    (rows ``episode_id,title``, a header row allowed)."""
    if suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TitlesError(f"not valid JSON ({e})") from None
        if isinstance(data, dict):
            pairs = list(data.items())
        elif isinstance(data, list) and all(isinstance(d, dict) for d in data):
            pairs = [(d.get("episode_id") or d.get("id"), d.get("title")) for d in data]
        else:
            raise TitlesError('expected {"S01E02": "Title", ...} or [{"episode_id": ..., "title": ...}, ...]')
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["episode_id", "title"], ["id", "title"]):
            rows = rows[1:]
        if any(len(r) < 2 for r in rows):
            raise TitlesError("each CSV row needs two columns: episode_id,title")
        pairs = [(r[0], ",".join(r[1:])) for r in rows]
    out: dict[str, str] = {}
    for eid, title in pairs:
        if not isinstance(eid, str) or not isinstance(title, str) or not eid.strip() or not title.strip():
            raise TitlesError(f"each entry needs an episode id and a title, not {eid!r}: {title!r}")
        m = EPISODE_RE.fullmatch(eid.strip())
        key = f"S{int(m.group(1)):02d}E{int(m.group(2)):02d}" if m else eid.strip()
        out[key] = title.strip()
    return out


def load_titles(path: Path) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise TitlesError(f"{path}: {e.strerror or e}") from None
    try:
        return parse_titles(text, Path(path).suffix)
    except TitlesError as e:
        raise TitlesError(f"{path}: {e}") from None
