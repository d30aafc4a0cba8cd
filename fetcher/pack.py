"""`citywok pack`: every season LMDB of a version -> reproducible archive + .sha256, then the manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citywok.fetcher import manifest
from citywok.fetcher.archive import DEFAULT_ZSTD_LEVEL, ArchiveError, pack_season, shard_meta

from citywok import layout
from citywok.progress import bar as tqdm

log = logging.getLogger(__name__)


class PackError(Exception):
    """Nothing to pack, or a shard that cannot be packed."""


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
    entries, metas = [], []
    lmdb_bytes = 0
    bar = tqdm(seasons.items(), desc=f"pack {version}", unit="season", disable=not progress)
    for number, path in bar:
        try:
            meta = shard_meta(path)
            packed = pack_season(path, out, fmt=fmt, level=level)
        except ArchiveError as e:
            raise PackError(str(e)) from None
        (out / f"{packed.path.name}.sha256").write_text(sha256_line(packed.sha256, packed.path.name))
        entries.append(manifest.season_entry(number, packed, meta))
        metas.append(meta)
        lmdb_bytes += packed.source_bytes
        log.info(
            "packed %s: %d -> %d bytes (sha256 %s)",
            path.name,
            packed.source_bytes,
            packed.bytes,
            packed.sha256,
        )
    try:
        doc = manifest.build(version, entries, metas)
    except manifest.ManifestError as e:
        raise PackError(str(e)) from None
    layout.write_json_atomic(out / layout.MANIFEST, doc)
    return PackResult(out, doc, lmdb_bytes, sum(e.bytes for e in entries))
