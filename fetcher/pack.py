"""`citywok pack`: every season LMDB of a version -> reproducible archive + .sha256, then the manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from citywok.fetcher.archive import DEFAULT_ZSTD_LEVEL, ArchiveError, pack_season

from citywok import layout
from citywok.errors import CityWokError
from citywok.progress import bar as tqdm
from citywok.shardfile import ShardFileError, ShardSummary, shard_summary

log = logging.getLogger(__name__)


class PackError(CityWokError):
    """Nothing to pack, or a shard that cannot be packed."""

    code = "pack_failed"


@dataclass(frozen=True)
class PackResult:
    out_dir: Path
    manifest: dict[str, Any]
    lmdb_bytes: int
    archive_bytes: int


def archives_dir(data_dir: Path, version: str) -> Path:
    return Path(data_dir) / "archives" / layout.check_version(version)


def sha256_line(sha: str, name: str) -> str:
    """The `.sha256` file body, in sha256sum's format so `sha256sum -c` checks a downloaded archive."""
    return f"{sha}  {name}\n"


def pack_version(
    data_dir: Path,
    version: str,
    fmt: str = "zst",
    level: int = DEFAULT_ZSTD_LEVEL,
    out_dir: Path | None = None,
    progress: bool = True,
) -> PackResult:
    """Pack each season of ``DATA_DIR/fingerprints/<version>`` into ``out_dir`` (DATA_DIR/archives/V)."""
    src = layout.version_dir(data_dir, version)
    seasons = layout.season_dirs(src)
    if not seasons:
        raise PackError(f"{src} holds no season_NN.lmdb folders: nothing to pack for version {version}")
    out = out_dir or archives_dir(data_dir, version)
    out.mkdir(parents=True, exist_ok=True)
    entries, summaries = [], []
    lmdb_bytes = 0
    bar = tqdm(seasons.items(), desc=f"pack {version}", unit="season", disable=not progress)
    for number, path in bar:
        try:
            summary = shard_summary(path)
            packed = pack_season(path, out, fmt=fmt, level=level)
        except (ShardFileError, ArchiveError) as e:
            raise PackError(str(e)) from None
        (out / f"{packed.path.name}.sha256").write_text(sha256_line(packed.sha256, packed.path.name))
        entries.append(replace(summary.entry(number), archive=packed.path.name, bytes=packed.bytes,
                               sha256=packed.sha256, data_bytes=packed.data_bytes))
        summaries.append(summary)
        lmdb_bytes += packed.source_bytes
        log.info("packed %s: %d -> %d bytes (sha256 %s)", path.name, packed.source_bytes, packed.bytes, packed.sha256)
    doc = layout.Manifest(version=layout.check_version(version), seasons=tuple(entries),
                          params=summaries[0].params, params_digest=one_digest(entries, summaries),
                          created=_created(src))
    layout.write_manifest(out, doc)
    return PackResult(out, doc.to_json(), lmdb_bytes, sum(e.bytes for e in entries))


def one_digest(entries: list[layout.SeasonEntry], summaries: list[ShardSummary]) -> str | None:
    """The fingerprint parameters' digest all seasons share; PackError when they were built with different ones."""
    digests = {s.params_digest for s in summaries}
    if len(digests) > 1:
        raise PackError(
            "seasons were built with different fingerprint parameters ("
            + ", ".join(f"season {e.season}: {s.params_digest}" for e, s in zip(entries, summaries, strict=True))
            + "); re-ingest them with one parameter set"
        )
    return summaries[0].params_digest


def _created(src: Path) -> str | None:
    """When the packed version was written (its own manifest's), so that packing twice gives the same bytes."""
    try:
        return layout.load_manifest(src).created
    except layout.LayoutError:
        return None
