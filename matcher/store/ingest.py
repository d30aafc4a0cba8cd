"""Ingest: episode files -> a season shard, in parallel across cores.

Decoding dominates the cost, so files are fingerprinted in worker processes and written by this one,
serially, which LMDB wants anyway. Each write rewrites the season's postings table, so the episodes
fingerprinted since the last write go together, one transaction every WRITE_EVERY seconds: a killed
ingest leaves the shard as it was after the last write, and a rerun skips what is already in.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citywok.matcher.engine.decode import DecodeError, iter_pcm
from citywok.matcher.engine.fingerprint import fingerprint_episode
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.engine.triplets import Triplets
from citywok.matcher.store import shared
from citywok.matcher.store.library import Library
from citywok.matcher.store.names import episode_id_for, title_for
from citywok.matcher.store.season import NewEpisode, SeasonStore, SeasonWriter
from citywok.matcher.store.shard import Shard, ShardError, compact

from citywok import layout
from citywok.checksum import sha256_file
from citywok.shardfile import summarize

MEDIA_SUFFIXES = {".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".m4a", ".aac", ".wma", ".mka",
                  ".mp4", ".mkv", ".webm", ".avi", ".mov", ".ts", ".m4v", ".mpg", ".mpeg"}
INGEST_TIME_LIMIT = 900.0  # seconds an uploaded episode's decode may take (a 2-hour episode takes ~25)
WRITE_EVERY = 5.0  # seconds between writes of the episodes fingerprinted meanwhile
# ASCII only: "Ｓ01E01" (fullwidth) would be a second episode that looks like S01E01
EPISODE_ID_RE = re.compile(r"^\w[\w .:+()\[\]-]{0,127}$", re.ASCII)
MIN_EPISODE_SECONDS = 1.0
__all__ = ["EPISODE_ID_RE", "episode_id_for", "ingest_paths", "media_files", "remove_episodes"]


@dataclass
class IngestResult:
    path: str
    episode_id: str
    status: str  # added | replaced | skipped | failed
    seconds: float = 0.0
    hashes: int = 0
    error: str | None = None


def media_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and media files found under folders (sorted, hidden ones skipped)."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES and not f.name.startswith("."):
                    yield f
        elif p.is_file():
            yield p
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")


def fingerprint_file(path: str, params: FingerprintParams = DEFAULT_PARAMS) -> tuple[Hashes, Triplets, float]:
    """Decode and fingerprint one file, streamed (runs in a worker process)."""
    return fingerprint_episode(iter_pcm(path, params.sample_rate), params)


def _die_with(parent: int) -> None:
    """A decoder process ends with the ingest that started it, even a SIGKILLed one (Linux
    PR_SET_PDEATHSIG); it would otherwise decode on, orphaned, into a pipe no one reads."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent was gone before the request took
        os._exit(1)


PR_SET_PDEATHSIG = 1


_Result = tuple[tuple[Hashes, Triplets] | None, float, str | None]  # fingerprints, seconds, error


def _work(path: str, params: FingerprintParams) -> _Result:
    try:
        hashes, trips, seconds = fingerprint_file(path, params)
    except DecodeError as e:
        return None, 0.0, str(e)
    if seconds < MIN_EPISODE_SECONDS:
        return None, seconds, too_short(seconds)
    if len(hashes) == 0:
        return None, seconds, f"{seconds:.0f} s of audio without a single fingerprint (silence?)"
    return (hashes, trips), seconds, None


def too_short(seconds: float) -> str:
    if seconds <= 0:
        return "no audio could be decoded from it"
    return f"only {seconds:.2f} s of audio; an episode needs at least {MIN_EPISODE_SECONDS:g} s"


def season_path(data_dir: Path, version: str, season: int) -> Path:
    return layout.version_dir(data_dir, version) / layout.season_name(season)


def write_manifest(data_dir: Path, version: str, params: FingerprintParams = DEFAULT_PARAMS,
                   open_shards: dict[int, SeasonStore] | None = None) -> dict:
    """Rewrite the version's manifest from its shards, so a locally ingested version is complete.

    ``open_shards`` are seasons this process already has open (the server): LMDB forbids a second open.
    """
    return write_manifest_at(layout.version_dir(data_dir, version), params, open_shards)


def write_manifest_at(vdir: Path, params: FingerprintParams = DEFAULT_PARAMS,
                      open_shards: dict[int, SeasonStore] | None = None) -> dict:
    """The manifest of the version folder ``vdir`` (named after it), written from its shards."""
    version = layout.check_version(vdir.name)
    entries = []
    for n, path in layout.season_dirs(vdir).items():
        if open_shards and n in open_shards:
            entries.append(_season_entry(n, open_shards[n]))
            continue
        with Shard.open(path, params) as shard:
            entries.append(_season_entry(n, shard))
    manifest = layout.Manifest(version=version, seasons=tuple(entries), params=params.to_dict(),
                               params_digest=params.digest(),
                               created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    layout.write_manifest(vdir, manifest)
    return manifest.to_json()


def _season_entry(n: int, shard: SeasonStore) -> layout.SeasonEntry:
    episodes = [(e.id, e.title, e.duration) for e in shard.episodes()]
    return summarize(shard.meta(), episodes).entry(n)


def publish(data_dir: Path, version: str, params: FingerprintParams = DEFAULT_PARAMS,
            open_shards: dict[int, SeasonStore] | None = None) -> None:
    """Keep the version's manifest current, and serve it if nothing is served yet."""
    write_manifest(data_dir, version, params, open_shards)
    if layout.current_version(data_dir) is None:
        layout.flip_current(data_dir, version)


def ingest_paths(
    paths: Iterable[Path],
    season: int,
    data_dir: Path,
    version: str = "v1",
    params: FingerprintParams = DEFAULT_PARAMS,
    workers: int | None = None,
    on_result: Callable[[IngestResult], None] | None = None,
    titles: dict[str, str] | None = None,
) -> list[IngestResult]:
    """Ingest files into ``season``'s shard of ``version``: skip unchanged episodes, replace changed
    ones, add new ones; then compact the shard and keep the version's manifest current.

    Titles come from ``titles`` (episode id -> title, ``--titles``), else from the file name.
    """
    files = list(media_files(paths))
    shard = Shard.create(season_path(data_dir, version, season), params, season)
    results = ingest_files(shard, files, params, workers, on_result, titles)
    if any(r.status in {"added", "replaced"} for r in results):
        compact(shard.path)
    publish(data_dir, version, params)
    return results


def ingest_files(writer: SeasonWriter, files: list[Path], params: FingerprintParams = DEFAULT_PARAMS,
                 workers: int | None = None, on_result: Callable[[IngestResult], None] | None = None,
                 titles: dict[str, str] | None = None) -> list[IngestResult]:
    """Fingerprint ``files`` in parallel into an open season ``writer`` (any format), recompute its
    shared segments, and close it. Episodes are written in the files' order, whichever worker finishes
    first: the same files always get the same slots, and so the same answers where evidence ties."""
    sink = _Sink(writer, on_result)
    try:
        todo, names = _changed_files(writer, files, sink, titles or {})
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        # one file: a thread, sparing the start-up of worker processes
        pool_cls = ProcessPoolExecutor if n_workers > 1 else ThreadPoolExecutor
        pool_kw: dict[str, Any] = {}
        if pool_cls is ProcessPoolExecutor:
            pool_kw = {"initializer": _die_with, "initargs": (os.getpid(),)}
        with pool_cls(max_workers=n_workers, **pool_kw) as pool:
            for path, (prints, seconds, err) in _in_order(pool, list(todo), params, AHEAD * n_workers):
                eid, sha, existed = todo[path]
                if err is not None or prints is None:
                    sink.done(IngestResult(path, eid, "failed", seconds, 0, err))
                    continue
                sink.batch.append((path, NewEpisode(eid, prints[0], seconds, sha, names[path], prints[1]), existed))
                if time.monotonic() - sink.last_write >= WRITE_EVERY:
                    sink.write()
            if sink.batch:
                sink.write()
        changed = [r.episode_id for r in sink.results if r.status in {"added", "replaced"}]
        if changed or (isinstance(writer, Shard) and shared.stale(writer)):
            shared.update(writer, changed)  # also what a killed run left unpaired
    finally:
        writer.close()
    return sink.results


AHEAD = 4  # files submitted per worker beyond the one written next: the ones done early wait in memory


def _in_order(pool: Executor, paths: list[str], params: FingerprintParams, ahead: int
              ) -> Iterator[tuple[str, _Result]]:
    """Each file's fingerprints in the files' order, with at most ``ahead`` files submitted and not yet
    taken: the workers keep busy while one long file is fingerprinted, and what they finish meanwhile (a
    few megabytes an episode) waits for it in a bounded queue."""
    pending: deque[tuple[str, Future[_Result]]] = deque()
    rest = iter(paths)
    while True:
        while len(pending) < ahead and (path := next(rest, None)) is not None:
            pending.append((path, pool.submit(_work, path, params)))
        if not pending:
            return
        path, fut = pending.popleft()
        yield path, fut.result()


def _changed_files(writer: SeasonWriter, files: list[Path], sink: _Sink, titles: dict[str, str]
                   ) -> tuple[dict[str, tuple[str, str, bool]], dict[str, str]]:
    """The files to fingerprint (path -> episode id, sha256, whether the episode exists) and each file's
    title; unchanged episodes are reported skipped (their title updated if it changed), but for those an
    LMDB season holds without triplets (written before them): fingerprinted again, they get theirs."""
    todo: dict[str, tuple[str, str, bool]] = {}
    names: dict[str, str] = {}
    for f in files:
        eid = episode_id_for(f)
        if not EPISODE_ID_RE.match(eid):
            sink.done(IngestResult(str(f), eid, "failed", error=f"episode id {eid!r} (from the file name) must be "
                                   "ASCII letters, digits, spaces and ._-:+()[], e.g. S01E02"))
            continue
        named = titles.get(eid) or title_for(f)  # else the title stored before, else the id
        sha = sha256_file(f)
        old = writer.episode(eid)
        names[str(f)] = named or (old.title if old is not None else eid)
        if old is not None and old.sha256 == sha and not (isinstance(writer, Shard) and old.triplets is None):
            if named and old.title != named and isinstance(writer, Shard):
                writer.set_title(eid, named)
            sink.done(IngestResult(str(f), eid, "skipped", old.duration, old.hashes))
        else:
            todo[str(f)] = (eid, sha, old is not None)
    return todo, names


class _Sink:
    """Fingerprinted episodes waiting to be written, and the results so far."""

    def __init__(self, writer: SeasonWriter, on_result: Callable[[IngestResult], None] | None) -> None:
        self.writer = writer
        self.on_result = on_result
        self.results: list[IngestResult] = []
        self.batch: list[tuple[str, NewEpisode, bool]] = []
        self.last_write = time.monotonic()

    def done(self, r: IngestResult) -> None:
        self.results.append(r)
        if self.on_result:
            self.on_result(r)

    def write(self) -> None:
        """Write the fingerprinted episodes waiting in ``batch`` (one transaction if they can)."""
        items, self.batch, self.last_write = self.batch, [], time.monotonic()
        failed: dict[str, str] = {}
        try:
            self.writer.add_episodes([n for _, n, _ in items])
        except ShardError:  # find which: one transaction each
            for path, n, _ in items:
                try:
                    self.writer.add_episodes([n])
                except ShardError as e:
                    failed[path] = str(e)
        for path, n, existed in items:
            status = "failed" if path in failed else "replaced" if existed else "added"
            self.done(IngestResult(path, n.id, status, n.duration, 0 if path in failed else len(n.hashes),
                                   failed.get(path)))


def remove_episodes(episode_ids: Iterable[str], season: int, data_dir: Path, version: str = "v1",
                    params: FingerprintParams = DEFAULT_PARAMS) -> dict[str, bool]:
    """Remove episodes from a season; maps each id to whether it was there."""
    path = season_path(data_dir, version, season)
    with Shard.open(path, params, writable=True) as shard:
        out = {eid: shard.remove_episode(eid) for eid in episode_ids}
        if any(out.values()):
            shared.update(shard, changed=[])  # the removed episodes' segments go; no pair is new
    if any(out.values()):
        compact(path)
    publish(data_dir, version, params)
    return out



def ingest_bytes(shard: Shard, episode_id: str, data: bytes, params: FingerprintParams = DEFAULT_PARAMS,
                 title: str | None = None) -> IngestResult:
    """Fingerprint one uploaded file into an open, writable shard (the HTTP ingest route).

    Raises DecodeError when the bytes are not audio; an unchanged upload is skipped, like `ingest_paths`.
    Shared segments are recomputed, like `ingest_paths` does.
    """
    sha = hashlib.sha256(data).hexdigest()
    old = shard.episode(episode_id)
    if old is not None and old.sha256 == sha and old.triplets is not None:
        return IngestResult("<upload>", episode_id, "skipped", old.duration, old.hashes)
    hashes, trips, seconds = fingerprint_episode(iter_pcm(data, params.sample_rate, time_limit=INGEST_TIME_LIMIT),
                                                 params)
    if seconds < MIN_EPISODE_SECONDS:
        return IngestResult("<upload>", episode_id, "failed", seconds, 0, too_short(seconds))
    if len(hashes) == 0:
        return IngestResult("<upload>", episode_id, "failed", seconds, 0,
                            f"{seconds:.0f} s of audio without a single fingerprint (silence?)")
    shard.add_episodes([NewEpisode(episode_id, hashes, seconds, sha, title or episode_id, trips)])
    # not compacted: the shard stays open in the server; `citywok ingest` compacts later
    shared.update(shard, [episode_id])
    return IngestResult("<upload>", episode_id, "replaced" if old is not None else "added", seconds, len(hashes))


class IngestFailed(ShardError):
    """The served version cannot take an upload (read-only, a full disk, a full season): the client's
    request conflicts with the server's state, not a damaged shard."""

    status = 409
    code = "ingest_failed"


def ingest_into(library: Library, data_dir: Path, season: int, episode_id: str, data: bytes,
                title: str | None) -> IngestResult:
    """Write one upload into the served version's season shard and keep its manifest current."""
    try:
        return _ingest_into(library, data_dir, season, episode_id, data, title)
    except IngestFailed:
        raise
    except ShardError as e:
        raise IngestFailed(str(e)) from e


def _ingest_into(library: Library, data_dir: Path, season: int, episode_id: str, data: bytes,
                 title: str | None) -> IngestResult:
    if not library.writable:
        raise ShardError("the server serves legacy pickle databases (USE_LMDB=false), which are read-only")
    shard = library.shards.get(season)
    if shard is None:
        vdir = layout.version_dir(data_dir, library.version)
        shard = Shard.create(vdir / layout.season_name(season), library.params, season)
        library.shards = {**library.shards, season: shard}  # replaced whole: readers iterate the old dict
    if not isinstance(shard, Shard) or not shard.writable:
        raise ShardError("the served version is open read-only (its volume is not writable)")
    result = ingest_bytes(shard, episode_id, data, library.params, title)
    library.refresh()
    publish(data_dir, library.version, library.params, open_shards=library.shards)
    return result
