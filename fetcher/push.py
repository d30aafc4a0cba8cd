"""`citywok push`: archives, their .sha256 files, then the manifest (last, so a reader never sees a
manifest whose archives are not there yet).

A season already in the bucket with the same sha256 is not sent again: under this version it is left
alone; under another version it is copied server-side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from citywok.fetcher import manifest
from citywok.fetcher.pack import sha256_line
from citywok.fetcher.store import Store, StoreError

from citywok import layout
from citywok.checksum import sha256_file
from citywok.progress import bar as tqdm

log = logging.getLogger(__name__)


@dataclass
class PushResult:
    sent: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0


def _known_archives(store: Store, version: str) -> dict[str, str]:
    """sha256 -> key of an archive in another version's manifest in the bucket."""
    known: dict[str, str] = {}
    for other in store.versions():
        if other == version:
            continue
        try:
            entries = manifest.parse(store.get_manifest(other), store.url(other, layout.MANIFEST))
        except (StoreError, manifest.ManifestError):
            continue
        for e in entries:
            known.setdefault(e.sha256, store.key(other, e.archive))
    return known


def push_version(store: Store, archive_dir: Path, version: str, progress: bool | None = None) -> PushResult:
    """Upload a packed version from ``archive_dir``, after checking its archives against its manifest."""
    layout.check_version(version)
    mpath = archive_dir / layout.MANIFEST
    if not mpath.is_file():
        raise StoreError(f"{mpath} not found: run `citywok pack --db-version {version}` first")
    doc = layout.read_manifest(archive_dir)
    if doc.get("version") != version:
        raise StoreError(f"{mpath} is for version {doc.get('version')!r}, not {version!r}")
    entries = manifest.parse(doc, str(mpath))
    total = sum(e.bytes for e in entries)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"check {version}", disable=progress is False) as bar:
        for e in entries:
            path = archive_dir / e.archive
            if not path.is_file():
                raise StoreError(f"{path} is missing: run `citywok pack --db-version {version}` again")
            got = sha256_file(path, bar.update)
            if got != e.sha256:
                raise StoreError(f"{path} changed since it was packed: sha256 expected {e.sha256}, got {got}")
    res = PushResult()
    known: dict[str, str] | None = None
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"push {version}", disable=progress is False) as bar:
        for e in entries:
            key = store.key(version, e.archive)
            remote_sha, remote_size = store.remote_sha256(key)
            if remote_sha == e.sha256 and remote_size == e.bytes:
                res.skipped.append(e.archive)
                bar.update(e.bytes)
            else:
                if known is None:
                    known = _known_archives(store, version)
                if e.sha256 in known:
                    store.copy(known[e.sha256], key)
                    res.copied.append(e.archive)
                    bar.update(e.bytes)
                else:
                    store.upload(archive_dir / e.archive, key, e.sha256, on_bytes=bar.update)
                    res.sent.append(e.archive)
                    res.bytes_sent += e.bytes
            store.put_bytes(key + ".sha256", sha256_line(e.sha256, e.archive).encode(), "text/plain")
    store.put_bytes(store.key(version, layout.MANIFEST), mpath.read_bytes(), "application/json")
    log.info(
        "pushed %s to %s: %d sent, %d copied in the bucket, %d already there",
        version,
        store.describe(),
        len(res.sent),
        len(res.copied),
        len(res.skipped),
    )
    return res
