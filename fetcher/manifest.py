"""A version manifest as the fetcher takes it from the bucket: every season packed, its archive named as
the object-store layout says, with a sha256. The schema, its reader and its writer are
:mod:`citywok.layout`'s; this adds only what a manifest to fetch or push must also be.
"""

from __future__ import annotations

import re
from typing import Any

from citywok.fetcher.archive import ArchiveError, season_dir_of

from citywok import layout
from citywok.layout import ManifestError, SeasonEntry

__all__ = ["ManifestError", "SeasonEntry", "parse"]
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def parse(data: Any, where: str) -> list[SeasonEntry]:
    """Check a manifest to fetch or push and return its seasons; every problem names ``where`` and the field."""
    if not isinstance(data, dict) or data.get("format") != layout.FORMAT:
        raise ManifestError(f"{where}: not a CityWok fingerprints manifest")
    if data.get("format_version") != layout.MANIFEST_FORMAT:
        raise ManifestError(
            f"{where}: manifest format {data.get('format_version')!r}, this fetcher reads {layout.MANIFEST_FORMAT}"
        )
    if not data.get("seasons"):
        raise ManifestError(f"{where}: no seasons listed")
    entries = list(layout.parse_manifest(data, where).seasons)
    for entry in entries:
        try:
            dir_of_archive = season_dir_of(entry.archive)
        except ArchiveError as e:
            raise ManifestError(f"{where}: season {entry.season}: {e}") from None
        if entry.name != layout.season_name(entry.season) or dir_of_archive != entry.name or "/" in entry.archive:
            raise ManifestError(f"{where}: season {entry.season} has unexpected names {entry.name!r}/{entry.archive!r}")
        if not SHA256_RE.match(entry.sha256):
            raise ManifestError(f"{where}: season {entry.season} sha256 {entry.sha256!r} is not a sha256")
    return entries
