"""Fetch one version onto the volume: download, verify, unpack, then flip `current` (DESIGN.md layouts).

    fingerprints/.downloads-<version>/<sha>-season_NN.lmdb.tar.zst[.part]   resumable downloads
    fingerprints/.staging-<version>/season_NN.lmdb/                          unpacked and checked
    fingerprints/<version>/                                                  staging renamed, manifest inside
    fingerprints/current -> <version>                                        flipped last

`current` only ever moves to a folder whose every season was verified (archive sha256, then the LMDB
opened and its hash count compared with the manifest). A run killed at any moment leaves `current`
where it was; the next run keeps the finished downloads and resumes the partial ones.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citywok.fetcher import manifest, metrics
from citywok.fetcher.archive import ArchiveError, unpack_archive
from citywok.fetcher.store import Store

from citywok import layout
from citywok.checksum import sha256_file
from citywok.errors import CityWokError
from citywok.layout import DATA_FILE, SeasonEntry
from citywok.progress import bar as tqdm
from citywok.shardfile import ShardFileError, shard_summary

log = logging.getLogger(__name__)
LOCK = ".fetch.lock"
SPACE_MARGIN = 1.1


class FetchError(CityWokError):
    """The version cannot be fetched; what is served is untouched."""

    code = "fetch_failed"


@dataclass
class FetchResult:
    version: str
    downloaded: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    bytes_downloaded: int = 0
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)


def staging_dir(base: Path, version: str) -> Path:
    return base / f".staging-{version}"


def downloads_dir(base: Path, version: str) -> Path:
    return base / f".downloads-{version}"


def space_needed(entries: list[SeasonEntry]) -> int:
    """Bytes a download needs: the archive plus the unpacked season (x2 of the archive when not stated)."""
    return int(sum(e.bytes + max(e.data_bytes, 2 * e.bytes) for e in entries) * SPACE_MARGIN)


def check_space(where: Path, version: str, entries: list[SeasonEntry]) -> None:
    need = space_needed(entries)
    free = shutil.disk_usage(where).free
    if need > free:
        raise FetchError(
            f"not enough disk space for version {version} in {where}: need {need / 1e6:.1f} MB "
            f"({len(entries)} archives of {sum(e.bytes for e in entries) / 1e6:.1f} MB and their unpacked "
            f"seasons), {free / 1e6:.1f} MB free"
        )


@contextmanager
def volume_lock(base: Path) -> Iterator[None]:
    """One fetcher per volume at a time (the lock dies with its process, so a kill never wedges it)."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetchError(f"another fetcher is working on {base}") from None
        yield
    finally:
        os.close(fd)


def complete_versions(base: Path) -> dict[str, Path]:
    """Version name -> folder, for every folder with a manifest (the ones that may be served)."""
    out = {}
    if base.is_dir():
        for p in base.iterdir():
            if p.is_dir() and not p.is_symlink() and layout.VERSION_RE.match(p.name) and layout.is_complete(p):
                out[p.name] = p
    return out


def reusable(base: Path, entries: list[SeasonEntry], skip: str) -> dict[int, Path]:
    """Season -> an LMDB folder already on the volume whose archive had the same sha256."""
    wanted = {e.season: e.sha256 for e in entries}
    found: dict[int, Path] = {}
    for name, vdir in complete_versions(base).items():
        if name == skip:
            continue
        try:
            shas = layout.load_manifest(vdir).shas()
        except layout.LayoutError:
            continue
        for season, sha in shas.items():
            src = vdir / layout.season_name(season)
            if wanted.get(season) == sha and season not in found and (src / DATA_FILE).is_file():
                found[season] = src
    return found


def verify_season(path: Path, entry: SeasonEntry, params_digest: str | None) -> None:
    """The unpacked LMDB opens and holds what the manifest says (hash count, episodes, parameters)."""
    try:
        got = shard_summary(path)
    except ShardFileError as e:
        raise FetchError(f"season {entry.season}: {e}") from None
    problems = []
    if got.hash_count != entry.hash_count:
        problems.append(f"hash count {got.hash_count}, manifest says {entry.hash_count}")
    keys = got.postings_entries or 0
    if (keys == 0) != (entry.hash_count == 0):
        problems.append(f"{'no' if keys == 0 else 'a'} postings table, manifest says {entry.hash_count} hashes")
    if entry.episode_count and got.episode_count != entry.episode_count:
        problems.append(f"{got.episode_count} episodes, manifest says {entry.episode_count}")
    if params_digest and got.params_digest != params_digest:
        problems.append(f"parameters {got.params_digest}, manifest says {params_digest}")
    if problems:
        metrics.VERIFY_FAILURES.inc()
        raise FetchError(f"{path.name} failed verification: " + "; ".join(problems))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src / DATA_FILE, dst / DATA_FILE)
    except OSError:
        shutil.copyfile(src / DATA_FILE, dst / DATA_FILE)


def _run_all(fn: Callable[[SeasonEntry], None], todo: list[SeasonEntry], jobs: int) -> None:
    """``fn`` on every entry, ``jobs`` at a time; the first error is raised once the others finished or failed."""
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
        futures = [pool.submit(fn, e) for e in todo]
        first_error: BaseException | None = None
        for f in futures:
            try:
                f.result()
            except BaseException as err:  # keep the first; let the others finish or fail
                first_error = first_error or err
        if first_error:
            raise first_error


def _remove(path: Path) -> None:
    """Remove a folder by first renaming it to a hidden name, so a crash never leaves half of a version."""
    if not path.exists():
        return
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


@dataclass
class Fetcher:
    """Fetches versions from one store onto one volume (``DATA_DIR``)."""

    store: Store
    data_dir: Path
    jobs: int = 4
    keep: int = 2
    progress: bool | None = None

    @property
    def base(self) -> Path:
        return layout.fingerprints_dir(self.data_dir)

    def fetch(self, version: str) -> FetchResult:
        """Make ``version`` complete on the volume and point `current` at it; errors leave `current` alone."""
        layout.check_version(version)
        started = time.monotonic()
        with volume_lock(self.base):
            try:
                res = self._fetch_locked(version)
            except Exception:
                metrics.FETCHES.labels(outcome="error").inc()
                raise
        res.seconds = time.monotonic() - started
        metrics.FETCH_SECONDS.observe(res.seconds)
        metrics.FETCHES.labels(outcome="ok").inc()
        metrics.set_info(metrics.SERVED, layout.current_version(self.data_dir))
        return res

    def _fetch_locked(self, version: str) -> FetchResult:
        where = self.store.url(version, layout.MANIFEST)
        doc = self.store.get_manifest(version)
        try:
            entries = manifest.parse(doc, where)
        except manifest.ManifestError as e:
            raise FetchError(str(e)) from None
        if doc.get("version") not in (None, version):
            raise FetchError(f"{where} describes version {doc.get('version')!r}, not {version!r}")
        res = FetchResult(version)
        vdir = layout.version_dir(self.data_dir, version)
        if self._already_here(version, vdir, entries):
            log.info("version %s is already complete on the volume", version)
            self._install(version, res)
            return res
        staging = self._stage(version, entries, doc, res)
        if vdir.exists():
            _remove(vdir)
        os.rename(staging, vdir)
        layout.fsync_dir(self.base)
        shutil.rmtree(downloads_dir(self.base, version), ignore_errors=True)
        self._install(version, res)
        return res

    def _already_here(self, version: str, vdir: Path, entries: list[SeasonEntry]) -> bool:
        """True when the volume's copy of ``version`` holds the bucket's archives; FetchError when it differs
        while it is served (it cannot be replaced under the matcher)."""
        if not layout.is_complete(vdir):
            return False
        try:
            local = layout.load_manifest(vdir).shas()
        except layout.LayoutError:
            local = {}
        if local == {e.season: e.sha256 for e in entries}:
            return True
        if layout.current_version(self.data_dir) == version:
            raise FetchError(
                f"version {version} on the volume differs from the bucket's and is being served; "
                "publish changed shards under a new version name"
            )
        log.warning("version %s on the volume differs from the bucket's; replacing it", version)
        return False

    def _stage(self, version: str, entries: list[SeasonEntry], doc: dict[str, Any], res: FetchResult) -> Path:
        """Every season verified in the staging folder (reused from other versions or downloaded), then the
        manifest inside it; the staging folder goes on any failure."""
        staging = staging_dir(self.base, version)
        downloads = downloads_dir(self.base, version)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        downloads.mkdir(parents=True, exist_ok=True)
        try:
            reuse = reusable(self.base, entries, skip=version)
            todo = [e for e in entries if e.season not in reuse]
            check_space(self.base, version, todo)
            for entry in entries:
                if entry.season in reuse:
                    _link_or_copy(reuse[entry.season], staging / entry.name)
                    verify_season(staging / entry.name, entry, doc.get("params_digest"))
                    metrics.BYTES_REUSED.inc(entry.data_bytes)
                    res.reused.append(entry.season)
                    log.info("season %d reused from %s", entry.season, reuse[entry.season].parent.name)
            self._download_all(version, todo, staging, downloads, doc.get("params_digest"), res)
            layout.write_manifest(staging, doc)
            layout.fsync_dir(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _download_all(
        self,
        version: str,
        todo: list[SeasonEntry],
        staging: Path,
        downloads: Path,
        params_digest: str | None,
        res: FetchResult,
    ) -> None:
        total = sum(e.bytes for e in todo)
        lock = threading.Lock()
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=f"fetch {version}",
            disable=None if self.progress is None else not self.progress,
        ) as bar:

            def on_bytes(n: int) -> None:
                with lock:
                    bar.update(n)
                    res.bytes_downloaded += n

            def one(e: SeasonEntry) -> None:
                self._fetch_season(version, e, staging, downloads, params_digest, on_bytes)
                with lock:
                    res.downloaded.append(e.season)

            _run_all(one, todo, self.jobs)

    def _fetch_season(self, version: str, e: SeasonEntry, staging: Path, downloads: Path,
                      params_digest: str | None, on_bytes: Callable[[int], None]) -> None:
        """Download one archive (or keep a whole earlier download), unpack it into staging and verify it."""
        archive = downloads / f"{e.sha256[:16]}-{e.archive}"
        if archive.is_file():
            got = sha256_file(archive)
            if got != e.sha256:
                archive.unlink()
        if not archive.is_file():
            self.store.download(version, e.archive, archive, e.bytes, e.sha256, on_bytes)
        else:
            on_bytes(0)
        try:
            unpack_archive(archive, staging, e.name)
        except ArchiveError as err:
            archive.unlink()
            metrics.VERIFY_FAILURES.inc()
            raise FetchError(f"{e.archive}: {err}") from None
        verify_season(staging / e.name, e, params_digest)
        log.info("season %d fetched and verified (%d bytes, sha256 %s)", e.season, e.bytes, e.sha256)

    def _install(self, version: str, res: FetchResult) -> None:
        layout.flip_current(self.data_dir, version)
        log.info("serving %s", version)
        res.pruned = self.prune(version)

    def prune(self, fetched: str) -> list[str]:
        """Keep the newest ``keep`` complete versions; never the one served nor the one just fetched.
        Leftover staging and download folders of other versions go too."""
        current = layout.current_version(self.data_dir)
        versions = complete_versions(self.base)
        by_age = sorted(versions, key=lambda v: (versions[v] / layout.MANIFEST).stat().st_mtime, reverse=True)
        keep = {current, fetched, *by_age[: max(self.keep, 1)]}
        removed = []
        for v in by_age:
            if v not in keep:
                _remove(versions[v])
                removed.append(v)
                log.info("removed old version %s", v)
        for p in self.base.iterdir():
            if p.name.startswith((".staging-", ".downloads-", ".trash-")) and not p.name.endswith(f"-{fetched}"):
                shutil.rmtree(p, ignore_errors=True)
        return removed
