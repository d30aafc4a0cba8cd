"""The served version: which Library answers requests, swapped atomically while requests are in flight.

`DATA_DIR/fingerprints/current` says which version to serve. :meth:`ServedVersion.poll` notices when it
points somewhere new and complete, opens that version beside the old one, switches, and closes the old
one once the last request holding it lets go (a reference count per opened version). LMDB forbids
opening one environment twice in a process, so a version that is still draining is reused, not reopened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import ShardError

from citywok import layout
from citywok.errors import RETRY_SOON, CityWokError

log = logging.getLogger("citywok.swap")


class NotReady(CityWokError):
    """No complete version is loaded yet."""

    status = 503
    code = "not_ready"
    headers = RETRY_SOON

    def __init__(self, message: str = "no verified fingerprint version is loaded yet; try again shortly") -> None:
        super().__init__(message)


@dataclass
class Handle:
    """One opened version and how many requests hold it."""

    vdir: Path
    library: Library
    manifest_mtime: float
    refs: int = 0
    retired: bool = False
    closed: bool = False


class ServedVersion:
    """Holds the Library being served; thread-safe."""

    def __init__(self, data_dir: Path, max_seasons: int | None = None, writable: bool = False,
                 on_swap: Callable[[Handle | None, Handle], None] | None = None, legacy: bool = False,
                 only: Collection[int] | None = None, pin: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.pin = pin  # DB_VERSION: serve this version, not what `current` points to
        self.legacy = legacy  # USE_LMDB=false: serve DATA_DIR/season_NN.pkl, loaded once, never swapped
        self.max_seasons = max_seasons
        self.only = only
        self.writable = writable
        self.on_swap = on_swap
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._current: Handle | None = None
        self._open: dict[Path, Handle] = {}  # every opened version not yet closed, current or draining
        self.swaps = 0
        self.errors = 0  # distinct failures to load a version
        self.last_error: str | None = None

    # -- reading -------------------------------------------------------------------------------

    @property
    def current(self) -> Handle | None:
        return self._current

    @property
    def ready(self) -> bool:
        """A version is loaded and at least one of its seasons still serves."""
        h = self._current
        return h is not None and (bool(h.library.shards) or not getattr(h.library, "failed", None))

    def problems(self) -> dict[str, object]:
        """What readiness and /api/v1/test report beside the version: seasons left out and why, and
        the last failure to load or keep up with `current`."""
        h = self._current
        failed = getattr(h.library, "failed", {}) if h is not None else {}
        return {"failed_seasons": {str(n): why for n, why in sorted(failed.items())}, "last_error": self.last_error}

    @contextmanager
    def acquire(self) -> Iterator[Library]:
        """The current Library, kept open until the block ends even if a swap happens meanwhile."""
        with self._lock:
            h = self._current
            if h is None:
                raise NotReady()
            h.refs += 1
        try:
            yield h.library
        finally:
            self._release(h)

    def _release(self, h: Handle) -> None:
        with self._lock:
            h.refs -= 1
        self._retire(h)

    def draining(self) -> list[str]:
        """Versions swapped out but still held by in-flight requests."""
        with self._lock:
            return [h.vdir.name for h in self._open.values() if h.retired]

    # -- swapping ------------------------------------------------------------------------------

    def poll(self) -> bool:
        """Serve what `current` points to if it is new and complete; True when a swap happened.

        A version that cannot be opened is logged and skipped: the old one keeps answering.
        """
        with self._poll_lock:
            if self.legacy:
                return self._load_legacy()
            try:
                vdir = layout.version_dir(self.data_dir, self.pin) if self.pin else layout.current_dir(self.data_dir)
            except layout.LayoutError as e:
                self._fail(str(e))
                return False
            cur = self._current
            if cur is not None:
                self._check_served(cur)
            if vdir is None or not layout.is_complete(vdir):
                if cur is not None and vdir is not None and vdir.resolve() == cur.vdir:
                    self._fail(f"{cur.vdir.name}/{layout.MANIFEST} is gone; serving what was loaded")
                return False
            vdir = vdir.resolve()
            if cur is not None and cur.vdir == vdir:
                self._maybe_refresh(cur)
                return False
            try:
                return self._swap_to(vdir)
            except (ShardError, layout.LayoutError, OSError) as e:
                self._fail(f"cannot serve {vdir.name}: {e}")
                return False

    def _load_legacy(self) -> bool:
        from citywok.matcher.legacy.pickles import LegacyError, open_library

        if self._current is not None:
            return False
        try:
            lib = open_library(self.data_dir, max_seasons=self.max_seasons, only=self.only)
        except LegacyError as e:
            self._fail(f"cannot serve the legacy pickles: {e}")
            return False
        h = Handle(self.data_dir.resolve(), lib, 0.0)
        with self._lock:
            self._open[h.vdir] = h
            self._current = h
        self.last_error = None
        log.info("serving legacy pickles from %s (%d seasons, %d episodes)", self.data_dir, len(lib.seasons),
                 lib.episode_count())
        if self.on_swap:
            self.on_swap(None, h)
        return True

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.error("%s", message)
            self.errors += 1
        self.last_error = message

    def _swap_to(self, vdir: Path) -> bool:
        layout.read_manifest(vdir)  # refuse a manifest that is not one
        mtime = (vdir / layout.MANIFEST).stat().st_mtime
        with self._lock:
            h = self._open.get(vdir)
            if h is not None:  # still draining from an earlier swap: take it back
                h.retired = False
        if h is None:
            lib = self._open_library(vdir)
            h = Handle(vdir, lib, mtime)
        with self._lock:
            old = self._current
            self._open[vdir] = h
            self._current = h
            if old is not None:
                old.retired = True
            self.swaps += 1 if old is not None else 0
        self.last_error = None
        log.info("serving %s (%d seasons, %d episodes)%s", vdir.name, len(h.library.seasons),
                 h.library.episode_count(), f", was {old.vdir.name}" if old else "")
        if old is not None:
            self._retire(old)
        if self.on_swap:
            self.on_swap(old, h)
        return True

    def _open_library(self, vdir: Path) -> Library:
        """Writable when ingest is on; a version on a read-only volume is still served, read-only."""
        if self.writable:
            try:
                return Library.open(vdir, max_seasons=self.max_seasons, writable=True, only=self.only)
            except ShardError as e:
                log.warning("serving %s read-only (ingest into it will fail): %s", vdir.name, e)
        return Library.open(vdir, max_seasons=self.max_seasons, only=self.only)

    def _retire(self, h: Handle) -> None:
        """Close a swapped-out version once no request holds it (called at the swap and at each release)."""
        with self._lock:
            close = h.retired and h.refs == 0 and not h.closed
            if close:
                h.closed = True
                self._open.pop(h.vdir, None)
        if close:
            h.library.close()
            log.info("closed version %s", h.vdir.name)

    def _check_served(self, h: Handle) -> None:
        """Leave out seasons of the served version whose files shrank or went (see Library.check)."""
        if self.legacy or not hasattr(h.library, "check"):
            return
        if h.library.check():
            self._fail("seasons left out of " + h.vdir.name + ": " + ", ".join(
                f"{n} ({why})" for n, why in sorted(h.library.failed.items())))
            if self.on_swap:
                self.on_swap(None, h)

    def _maybe_refresh(self, h: Handle) -> None:
        """Another process ingested into the served version: re-read its episode tables."""
        try:
            mtime = (h.vdir / layout.MANIFEST).stat().st_mtime
        except OSError:
            return
        if mtime != h.manifest_mtime:
            h.manifest_mtime = mtime
            if self.last_error and layout.MANIFEST in self.last_error:
                self.last_error = None  # the manifest is back
            h.library.refresh()

    def close(self) -> None:
        """Close every opened version (at shutdown, after requests have drained)."""
        with self._lock:
            handles = list(self._open.values())
            self._open.clear()
            self._current = None
        for h in handles:
            if not h.closed:
                h.closed = True
                h.library.close()
