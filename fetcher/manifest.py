"""The version manifest: what a version holds, in the bucket and on the volume (the same document).

    {"format": "citywok-fingerprints", "format_version": 1, "version": "v3",
     "params": {...}, "params_digest": "58666fca8b0f3b02",
     "seasons": {"01": {"season": 1, "lmdb": "season_01.lmdb", "archive": "season_01.lmdb.tar.zst",
                        "bytes": 123, "sha256": "...", "data_bytes": 456, "hash_count": 131042,
                        "posting_count": 195267, "episode_count": 3, "episodes": ["S01E01", ...]}, ...}}

``seasons`` is keyed by the two-digit season number, the shape `citywok ingest` writes for a local version.

Pure functions only: building, checking, and comparing manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from citywok.fetcher.archive import ArchiveError, PackedSeason, season_dir_of

from citywok import layout

FORMAT = "citywok-fingerprints"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(Exception):
    """A manifest that is missing, malformed, or inconsistent."""


@dataclass(frozen=True)
class SeasonEntry:
    season: int
    name: str
    archive: str
    bytes: int
    sha256: str
    data_bytes: int
    hash_count: int
    posting_count: int
    episode_count: int
    episodes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["lmdb"] = d.pop("name")
        d["episodes"] = list(self.episodes)
        return d


def season_entry(season: int, packed: PackedSeason, meta: dict[str, Any]) -> SeasonEntry:
    """What the manifest says about one packed season, from the archive and the shard's meta record."""
    return SeasonEntry(
        season=season,
        name=layout.season_name(season),
        archive=packed.path.name,
        bytes=packed.bytes,
        sha256=packed.sha256,
        data_bytes=packed.data_bytes,
        hash_count=int(meta["hash_count"]),
        posting_count=int(meta.get("posting_count", 0)),
        episode_count=int(meta.get("episode_count", len(meta.get("episodes", [])))),
        episodes=tuple(meta.get("episodes", [])),
    )


def build(version: str, entries: list[SeasonEntry], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """A manifest for ``version``; refuses seasons built with different fingerprint parameters."""
    digests = {m.get("params_digest") for m in metas}
    if len(digests) > 1:
        raise ManifestError(
            "seasons were built with different fingerprint parameters ("
            + ", ".join(f"season {e.season}: {m.get('params_digest')}" for e, m in zip(entries, metas, strict=True))
            + "); re-ingest them with one parameter set"
        )
    return {
        "format": FORMAT,
        "format_version": layout.MANIFEST_FORMAT,
        "version": layout.check_version(version),
        "params": metas[0].get("params", {}) if metas else {},
        "params_digest": metas[0].get("params_digest") if metas else None,
        "seasons": {f"{e.season:02d}": e.to_json() for e in sorted(entries, key=lambda e: e.season)},
    }


def parse(data: Any, where: str) -> list[SeasonEntry]:
    """Check a fetched manifest and return its seasons; every problem names ``where`` and the field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{where}: not a CityWok fingerprints manifest")
    if data.get("format_version") != layout.MANIFEST_FORMAT:
        raise ManifestError(
            f"{where}: manifest format {data.get('format_version')!r}, this fetcher reads {layout.MANIFEST_FORMAT}"
        )
    seasons = data.get("seasons")
    if isinstance(seasons, dict):
        seasons = list(seasons.values())
    if not isinstance(seasons, list) or not seasons:
        raise ManifestError(f"{where}: no seasons listed")
    out = []
    for i, s in enumerate(seasons):
        try:
            entry = SeasonEntry(
                season=int(s["season"]),
                name=str(s["lmdb"]),
                archive=str(s["archive"]),
                bytes=int(s["bytes"]),
                sha256=str(s["sha256"]),
                data_bytes=int(s.get("data_bytes", 0)),
                hash_count=int(s["hash_count"]),
                posting_count=int(s.get("posting_count", 0)),
                episode_count=int(s.get("episode_count", 0)),
                episodes=tuple(s.get("episodes", [])),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{where}: season entry {i} is malformed ({e!r})") from None
        try:
            dir_of_archive = season_dir_of(entry.archive)
        except ArchiveError as e:
            raise ManifestError(f"{where}: season {entry.season}: {e}") from None
        if entry.name != layout.season_name(entry.season) or dir_of_archive != entry.name or "/" in entry.archive:
            raise ManifestError(f"{where}: season {entry.season} has unexpected names {entry.name!r}/{entry.archive!r}")
        if not SHA256_RE.match(entry.sha256):
            raise ManifestError(f"{where}: season {entry.season} sha256 {entry.sha256!r} is not a sha256")
        out.append(entry)
    if len({e.season for e in out}) != len(out):
        raise ManifestError(f"{where}: a season is listed twice")
    return out


def season_shas(data: dict[str, Any]) -> dict[int, str]:
    """Season -> archive sha256 in a manifest on the volume (tolerant: ingest writes its own shape)."""
    out: dict[int, str] = {}
    seasons = data.get("seasons")
    if isinstance(seasons, dict):
        seasons = list(seasons.values())
    if isinstance(seasons, list):
        for s in seasons:
            if isinstance(s, dict) and isinstance(s.get("sha256"), str) and isinstance(s.get("season"), int):
                out[s["season"]] = s["sha256"]
    return out
