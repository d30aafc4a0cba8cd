"""The volume layout shared by fetcher and matcher (DESIGN.md, "Volume layout").

    DATA_DIR/fingerprints/<version>/season_01.lmdb/
    DATA_DIR/fingerprints/<version>/manifest.json     written last: its presence means "complete"
    DATA_DIR/fingerprints/current -> <version>        flipped atomically

This module is the whole contract between the two: paths, the manifest file, and the `current` flip;
and, for the operator, the Pod annotations through which the fetcher sidecar says what it serves.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MANIFEST = "manifest.json"
DATA_FILE = "data.mdb"  # the one file of a season's LMDB folder (archives carry only it)
CURRENT = "current"
MANIFEST_FORMAT = 1
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SEASON_RE = re.compile(r"^season_([0-9]{2,})\.lmdb$")
SEASON_NUMBER_RE = re.compile(r"^[0-9]{1,2}$")  # ASCII digits only: int() also takes "١" and "1_0"

# Set by the fetcher on its own Pod, read by the operator (DESIGN.md, "The FingerprintDB resource").
SERVED_ANNOTATION = "citywok.io/served-version"
ERROR_ANNOTATION = "citywok.io/fetch-error"


class LayoutError(Exception):
    """The volume does not hold what the layout promises."""


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


def read_manifest(vdir: Path) -> dict[str, Any]:
    path = vdir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LayoutError(f"{vdir} has no {MANIFEST}: the version is incomplete and is not served") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or "seasons" not in data:
        raise LayoutError(f"{path} is not a CityWok manifest (no 'seasons')")
    return data


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


def write_manifest(vdir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(vdir / MANIFEST, manifest)


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
