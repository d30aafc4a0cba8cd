"""The volume layout shared by fetcher and matcher (DESIGN.md, "Volume layout").

    DATA_DIR/fingerprints/<version>/season_01.lmdb/
    DATA_DIR/fingerprints/<version>/manifest.json     written last: its presence means "complete"
    DATA_DIR/fingerprints/current -> <version>        flipped atomically

This module is the whole contract between the two: paths, the manifest (its one schema, reader and
writer), and the `current` flip; and, for the operator, the Pod annotations through which the fetcher
sidecar says what it serves.

The manifest, the same document on the volume and in the bucket (DESIGN.md, "Object-store layout"):

    {"format": "citywok-fingerprints", "format_version": 1, "version": "v3", "created": "2026-...Z",
     "params": {...}, "params_digest": "58666fca8b0f3b02",
     "seasons": {"01": {"season": 1, "lmdb": "season_01.lmdb", "hash_count": 131042, "posting_count": 195267,
                        "episode_count": 3, "episodes": ["S01E01", ...], "titles": {...}, "seconds": 3600.0,
                        "archive": "season_01.lmdb.tar.zst", "bytes": 123, "sha256": "...", "data_bytes": 456}}}

``seasons`` is keyed by the two-digit season number. The archive fields are there once a version is packed
(`citywok pack`); a version `citywok ingest` keeps has none. ``created`` is absent when unknown.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from citywok.errors import CityWokError

T = TypeVar("T")

MANIFEST = "manifest.json"
DATA_FILE = "data.mdb"  # the one file of a season's LMDB folder (archives carry only it)
CURRENT = "current"
MANIFEST_FORMAT = 1
FORMAT = "citywok-fingerprints"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SEASON_RE = re.compile(r"^season_([0-9]{2,})\.lmdb$")
SEASON_NUMBER_RE = re.compile(r"^[0-9]{1,2}$")  # ASCII digits only: int() also takes "١" and "1_0"

# Set by the fetcher on its own Pod, read by the operator (DESIGN.md, "The FingerprintDB resource").
SERVED_ANNOTATION = "citywok.io/served-version"
ERROR_ANNOTATION = "citywok.io/fetch-error"


class LayoutError(CityWokError):
    """The volume does not hold what the layout promises."""

    code = "bad_layout"


class ManifestError(LayoutError):
    """A manifest that is malformed or inconsistent; the message names the file and the field."""

    code = "bad_manifest"


def check_version(version: str) -> str:
    """Refuse version names that could escape the fingerprints folder."""
    if not VERSION_RE.match(version) or version in {CURRENT, ".", ".."}:
        raise LayoutError(f"invalid version name {version!r}: use letters, digits, '.', '_' or '-'")
    return version


def fingerprints_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "fingerprints"


def version_dir(data_dir: Path, version: str) -> Path:
    return fingerprints_dir(data_dir) / check_version(version)


def season_name(season: int) -> str:
    return f"season_{season:02d}.lmdb"


def parse_season(text: str) -> int:
    """A season number as people type it (1 to 99, ASCII digits); ValueError otherwise."""
    text = str(text).strip()
    if not SEASON_NUMBER_RE.match(text) or not 1 <= int(text) <= 99:
        raise ValueError(f"season must be a whole number from 1 to 99 in digits 0-9, not {text!r}")
    return int(text)


def season_number(name: str) -> int | None:
    m = SEASON_RE.match(name)
    return int(m.group(1)) if m else None


def season_dirs(vdir: Path) -> dict[int, Path]:
    """Season number -> LMDB folder, for every ``season_NN.lmdb`` in a version folder."""
    out: dict[int, Path] = {}
    if vdir.is_dir():
        for p in vdir.iterdir():
            n = season_number(p.name)
            if n is not None and p.is_dir():
                out[n] = p
    return dict(sorted(out.items()))


def pick_seasons(found: dict[int, T], max_seasons: int | None = None,
                 only: Collection[int] | None = None) -> dict[int, T]:
    """The seasons to serve out of ``found`` (sorted by number): those in ``only`` (SEASONS, the
    FingerprintDB's ``seasons``) if given, then the first ``max_seasons`` (MAX_SEASONS)."""
    picked = {n: v for n, v in found.items() if only is None or n in only}
    return picked if max_seasons is None else dict(list(picked.items())[:max_seasons])


def is_complete(vdir: Path) -> bool:
    return (vdir / MANIFEST).is_file()


@dataclass(frozen=True)
class SeasonEntry:
    """One season as the manifest names it: what its shard holds and, once packed, its archive."""

    season: int
    name: str  # the LMDB folder, season_NN.lmdb
    hash_count: int
    posting_count: int = 0
    episode_count: int = 0
    episodes: tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)  # episode id -> title, where they differ
    seconds: float | None = None  # audio the season holds
    archive: str = ""  # the rest is empty until the season is packed
    bytes: int = 0
    sha256: str = ""
    data_bytes: int = 0  # size of data.mdb inside the archive: the room the unpacked season needs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"season": self.season, "lmdb": self.name, "hash_count": self.hash_count,
                               "posting_count": self.posting_count, "episode_count": self.episode_count,
                               "episodes": list(self.episodes), "titles": dict(self.titles)}
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.archive:
            out.update(archive=self.archive, bytes=self.bytes, sha256=self.sha256, data_bytes=self.data_bytes)
        return out

    @classmethod
    def from_json(cls, s: Any, key: str | None) -> SeasonEntry:
        """KeyError, TypeError or ValueError when a field is missing or of the wrong type."""
        if not isinstance(s, dict):
            raise TypeError(f"a season entry is an object, not {type(s).__name__}")
        season = int(s["season"] if "season" in s or key is None else key)
        episodes = tuple(str(e) for e in s.get("episodes", []))
        seconds = s.get("seconds")
        return cls(season=season, name=str(s.get("lmdb", season_name(season))), hash_count=int(s["hash_count"]),
                   posting_count=int(s.get("posting_count", 0)),
                   episode_count=int(s.get("episode_count", len(episodes))), episodes=episodes,
                   titles={str(k): str(v) for k, v in dict(s.get("titles") or {}).items()},
                   seconds=None if seconds is None else float(seconds), archive=str(s.get("archive", "")),
                   bytes=int(s.get("bytes", 0)), sha256=str(s.get("sha256", "")),
                   data_bytes=int(s.get("data_bytes", 0)))


@dataclass(frozen=True)
class Manifest:
    """What a version holds: its seasons, and the fingerprint parameters they were built with."""

    version: str | None
    seasons: tuple[SeasonEntry, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    params_digest: str | None = None
    created: str | None = None  # when it was written (UTC, ISO 8601)

    def to_json(self) -> dict[str, Any]:
        """The one shape every manifest is written in."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": MANIFEST_FORMAT, "version": self.version,
                               "params": dict(self.params), "params_digest": self.params_digest,
                               "seasons": {f"{e.season:02d}": e.to_json()
                                           for e in sorted(self.seasons, key=lambda e: e.season)}}
        if self.created is not None:
            out["created"] = self.created
        return out

    def shas(self) -> dict[int, str]:
        """Season -> archive sha256, for the seasons that were packed."""
        return {e.season: e.sha256 for e in self.seasons if e.sha256}


def parse_manifest(data: Any, where: str) -> Manifest:
    """The one reader of a manifest document. It also reads the shape `citywok ingest` wrote before the
    fetcher's and the ingest's manifests were one (no ``format``, no ``episode_count``): volumes in the
    field hold it."""
    if not isinstance(data, dict) or "seasons" not in data:
        raise LayoutError(f"{where} is not a CityWok manifest (no 'seasons')")
    if data.get("format", FORMAT) != FORMAT:
        raise ManifestError(f"{where}: not a CityWok fingerprints manifest")
    if data.get("format_version", MANIFEST_FORMAT) != MANIFEST_FORMAT:
        raise ManifestError(f"{where}: manifest format {data.get('format_version')!r}, "
                            f"this CityWok reads {MANIFEST_FORMAT}")
    seasons = data["seasons"]
    if not isinstance(seasons, dict | list):
        raise ManifestError(f"{where}: 'seasons' is neither an object nor a list")
    items = list(seasons.items()) if isinstance(seasons, dict) else [(None, s) for s in seasons]
    entries = []
    for i, (key, s) in enumerate(items):
        try:
            entries.append(SeasonEntry.from_json(s, key))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{where}: season entry {i} is malformed ({e!r})") from None
    if len({e.season for e in entries}) != len(entries):
        raise ManifestError(f"{where}: a season is listed twice")
    version, digest, created = data.get("version"), data.get("params_digest"), data.get("created")
    return Manifest(version=None if version is None else str(version), seasons=tuple(entries),
                    params=dict(data.get("params") or {}), params_digest=None if digest is None else str(digest),
                    created=None if created is None else str(created))


def load_manifest(vdir: Path) -> Manifest:
    """The manifest of a version folder; LayoutError when it has none or it is not one."""
    path = vdir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LayoutError(f"{vdir} has no {MANIFEST}: the version is incomplete and is not served") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path} is not valid JSON: {e}") from None
    return parse_manifest(data, str(path))


def read_manifest(vdir: Path) -> dict[str, Any]:
    """The manifest of a version folder as JSON, in the current shape whatever shape is on disk."""
    return load_manifest(vdir).to_json()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file, fsync, and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_manifest(vdir: Path, manifest: Manifest | dict[str, Any]) -> None:
    """The one writer: a Manifest, or a document read back through the reader, in the one shape; written
    last, atomically, since its presence is what makes the version complete."""
    if not isinstance(manifest, Manifest):
        manifest = parse_manifest(manifest, str(vdir / MANIFEST))
    write_json_atomic(vdir / MANIFEST, manifest.to_json())


def current_version(data_dir: Path) -> str | None:
    """The version `current` points to, or None when there is none yet."""
    link = fingerprints_dir(data_dir) / CURRENT
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    return Path(target).name


def current_dir(data_dir: Path) -> Path | None:
    """The folder `current` points to; LayoutError when it points at no version (itself, say)."""
    v = current_version(data_dir)
    if v is None:
        return None
    if not VERSION_RE.match(v) or v in {CURRENT, ".", ".."}:
        link = fingerprints_dir(data_dir) / CURRENT
        raise LayoutError(f"{link} points at {os.readlink(link)!r}, not at a version folder:"
                          " run `citywok use VERSION` to point it at one")
    return version_dir(data_dir, v)


def flip_current(data_dir: Path, version: str) -> None:
    """Point `current` at a complete version: a new symlink renamed over the old one (atomic)."""
    vdir = version_dir(data_dir, version)
    if not is_complete(vdir):
        raise LayoutError(f"refusing to serve {vdir}: it has no {MANIFEST}")
    base = fingerprints_dir(data_dir)
    tmp = base / f".{CURRENT}.tmp{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, base / CURRENT)
    fsync_dir(base)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
