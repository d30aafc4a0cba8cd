"""Where identify jobs run: in worker processes (the default), or in threads of the server process.

Decoding, fingerprinting and voting a clip is ~15 ms of mostly GIL-holding Python and small numpy
calls, so threads of one process top out near one core however many there are. Worker processes
each run one clip at a time and open the versions they are asked about themselves: every process
maps the same LMDB files, so the page cache is shared, not copied. The server process keeps what
only it can do: HTTP, admission (429s), metrics and deciding which version is served; a job names the
version folder it must be answered from, so a swap needs no message to the workers.

A worker that dies (a decoder crash on a hostile file, the OOM killer) fails the jobs it held with
:class:`WorkerLost`; the pool is replaced and the next request is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import MAX_CLIP_SECONDS, Identification, identify_pcm
from citywok.matcher.store.library import Library

from citywok import layout
from citywok.errors import RETRY_SOON, CityWokError

T = TypeVar("T")

log = logging.getLogger("citywok.workers")

KEEP_OPEN = 2  # versions a worker keeps open: the served one and the one draining after a swap
DECODE_TIME_LIMIT = 10.0  # seconds of wall time a clip's decode may take inside a job
JOB_TIME_LIMIT = 30.0  # past it the worker is stuck in one C call: it is killed and the pool replaced


class WorkerLost(CityWokError):
    """The worker process running a job died before answering; a retry goes to a new one."""

    status = 503
    code = "worker_lost"
    headers = RETRY_SOON

    @property
    def message(self) -> str:
        return f"{self}; retry the request"


class JobTimeout(CityWokError):
    """A job ran past JOB_TIME_LIMIT; its worker was killed (the clip is taken to be undecodable)."""

    status = 415
    code = "unsupported_media"

    @property
    def message(self) -> str:
        return f"the clip could not be decoded in time: {self}"


@dataclass
class Timed:
    result: Identification
    decode_s: float
    match_s: float


def identify_bytes(library: Library, data: bytes) -> Timed:
    """Decode and identify one clip."""
    library.check()  # a season whose file shrank is left out before its pages are read
    t0 = time.perf_counter()
    pcm = decode(data, library.params.sample_rate, max_seconds=MAX_CLIP_SECONDS, time_limit=DECODE_TIME_LIMIT)
    t1 = time.perf_counter()
    result = identify_pcm(library, pcm)
    return Timed(result, t1 - t0, time.perf_counter() - t1)


# -- inside a worker process ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSettings:
    max_seasons: int | None = None
    only: tuple[int, ...] | None = None
    pin: bool = True  # nothing writes into served versions (ingest is off): keep snapshots parsed
    server_pid: int = 0  # a worker outliving its server (killed with SIGKILL) ends itself


_settings = WorkerSettings()
_libraries: OrderedDict[str, tuple[int | None, Library]] = OrderedDict()


def _init(settings: WorkerSettings, started: Any = None) -> None:
    """A worker finishes the job it holds: shutdown is the server's to order (it drains first). It
    tells ``started`` (its pool's queue) its pid: the executor does not say which processes it runs."""
    global _settings
    _settings = settings
    if started is not None:
        started.put(os.getpid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if settings.server_pid:
        threading.Thread(target=_end_with, args=(settings.server_pid,), daemon=True).start()


def _end_with(pid: int, every: float = 1.0) -> None:
    """Exit once the server process is gone. A pool's worker holds both ends of its own job queue,
    so it would otherwise wait for work forever after a SIGKILL of the server."""
    while True:
        time.sleep(every)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, under another user: not ours to judge
            pass


def library(vdir: str) -> Library:
    """This worker's Library of a version folder, reopened when its manifest changed (an ingest
    added episodes or a season); the least recently asked beyond KEEP_OPEN are closed. A manifest
    that went away while the version is open changes nothing: what was loaded keeps answering."""
    try:
        stamp = (Path(vdir) / layout.MANIFEST).stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    got = _libraries.pop(vdir, None)
    if got is not None and stamp is None:
        stamp = got[0]
    if got is not None and got[0] != stamp:
        got[1].close()
        got = None
    if got is None:
        lib = Library.open(Path(vdir), max_seasons=_settings.max_seasons, only=_settings.only, pin=_settings.pin)
        got = (stamp, lib)
    _libraries[vdir] = got
    while len(_libraries) > KEEP_OPEN:
        _libraries.popitem(last=False)[1][1].close()
    return got[1]


def identify_job(vdir: str, data: bytes) -> Timed:
    return identify_bytes(library(vdir), data)


def library_job(fn: Callable[..., object], vdir: str, *args: object) -> object:
    """Run ``fn(library, *args)`` on this worker's Library of ``vdir`` (timeline.py's decode and windows)."""
    return fn(library(vdir), *args)


def warm_job(vdir: str, hold: float) -> None:
    """Open a version ahead of its first clip; held a moment so that each worker takes one."""
    library(vdir)
    time.sleep(hold)


# -- in the server process ------------------------------------------------------------------------------


class IdentifyPool:
    """Runs identify jobs in ``workers`` processes, or in ``threads`` threads of this process when
    ``workers`` is 0 (the legacy pickle mode, whose libraries are too big to load once per process)."""

    def __init__(self, workers: int, threads: int, settings: WorkerSettings) -> None:
        self.workers = workers
        self.settings = settings
        self.slots = workers or threads  # jobs that can run at once
        self._lock = threading.Lock()
        self._started: Any = None  # the current pool's workers put their pids here as they start
        self._pids: set[int] = set()
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="identify") if workers == 0 else None
        self._procs: ProcessPoolExecutor | None = self._new_pool() if workers else None

    def _new_pool(self) -> ProcessPoolExecutor:
        # forkserver: workers are forked from a clean single-threaded process, never from this
        # threaded one; the server preloads the engine so that each fork is quick.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self._started, self._pids = ctx.SimpleQueue(), set()
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init,
                                   initargs=(self.settings, self._started))

    async def identify(self, library: Library, data: bytes) -> Timed:
        """Identify a clip against ``library``: here, or in a worker by the library's version folder."""
        if self._threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, identify_bytes, library, data)
        return await self._run(identify_job, str(library.path), data)

    async def run(self, library: Library, fn: Callable[..., object], *args: object) -> Any:
        """``fn(library, *args)`` in a worker (by the library's version folder) or a thread; ``fn`` must be
        a module-level function, its arguments and result picklable."""
        if self._threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, fn, library, *args)
        return await self._run(library_job, fn, str(library.path), *args)

    async def warm(self, vdir: Path, hold: float = 0.05) -> None:
        """Start every worker and open ``vdir`` in each (at startup and after a swap)."""
        if self._procs is None:
            return
        got = await asyncio.gather(*(self._run(warm_job, str(vdir), hold) for _ in range(self.workers)),
                                   return_exceptions=True)
        for e in got:
            if isinstance(e, BaseException):
                log.warning("warming %s in a worker failed: %s", vdir.name, e)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        pool = self._procs
        assert pool is not None
        try:
            fut = pool.submit(fn, *args)
            return await asyncio.wait_for(asyncio.wrap_future(fut), JOB_TIME_LIMIT)
        except BrokenProcessPool:
            self._replace(pool)
            raise WorkerLost("an identify worker process died before answering") from None
        except TimeoutError:
            # a running job cannot be cancelled: its worker is stuck, so the pool's workers go
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._replace(pool)
            raise JobTimeout(f"the job took longer than {JOB_TIME_LIMIT:g} s and was stopped") from None

    def _replace(self, broken: Executor) -> None:
        with self._lock:
            if self._procs is not broken:
                return
            log.error("an identify worker process died; starting a new pool of %d", self.workers)
            self._procs = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The current pool's worker processes running now."""
        with self._lock:
            if self._started is None:
                return []
            while not self._started.empty():
                self._pids.add(self._started.get())
            return sorted(pid for pid in self._pids if _running(pid))

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
        if self._procs is not None:
            self._procs.shutdown(wait=True)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (the forkserver reaps the workers it forked, so none lingers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settings_for(max_seasons: int | None, only: Collection[int] | None, ingest: bool) -> WorkerSettings:
    return WorkerSettings(max_seasons, tuple(only) if only is not None else None, pin=not ingest,
                          server_pid=os.getpid())
