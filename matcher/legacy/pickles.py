"""The legacy pickle database (one ``DATA_DIR/season_NN.pkl`` per season): writer, safe reader, library
(ingest's pickle sink is in ingest.py).

Existing installations keep their fingerprints in this format (docs/legacy-format.md). CityWok reads it
for ``USE_LMDB=false`` (the rollback path) and for ``citywok migrate``, and writes it so tests and users
can produce legacy databases. A pickle can name any importable callable, so loading one from an
untrusted volume would run arbitrary code: the reader refuses every global, which costs nothing here
because the format holds only dicts, lists, tuples, ints, floats, strings and None.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
from citywok.matcher.engine.catalogue import Postings
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.store.library import Library
from citywok.matcher.store.season import (
    GROUP_BITS,
    MAX_POSTINGS,
    MAX_SLOTS,
    Episode,
    Query,
    SeasonStore,
    lookup_seasons,
)

from citywok import layout
from citywok.errors import CityWokError

LEGACY_VERSION = 1
PROTOCOL = 4
PICKLE_RE = re.compile(r"^season_(\d{2,})\.pkl$")
LIBRARY_VERSION = "legacy-pickle"

Posting = tuple[str, int]
HashTable = dict[int, list[Posting]]


class LegacyError(CityWokError):
    """A legacy pickle is missing, truncated, foreign, or built with other parameters."""

    code = "bad_legacy_pickle"


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Refuses every class and function reference: loading can then only build plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


# -- paths -------------------------------------------------------------------------------------------


def pickle_name(season: int) -> str:
    return f"season_{season:02d}.pkl"


def pickle_path(data_dir: Path, season: int) -> Path:
    return Path(data_dir) / pickle_name(season)


def pickle_seasons(data_dir: Path) -> dict[int, Path]:
    """Season number -> pickle file, for every ``season_NN.pkl`` directly in ``data_dir``."""
    out: dict[int, Path] = {}
    d = Path(data_dir)
    if d.is_dir():
        for p in d.iterdir():
            m = PICKLE_RE.match(p.name)
            if m and p.is_file():
                out[int(m.group(1))] = p
    return dict(sorted(out.items()))


# -- reading and writing -----------------------------------------------------------------------------


def load_season(path: Path, params: FingerprintParams | None = DEFAULT_PARAMS) -> dict[str, Any]:
    """Read one season pickle without executing anything from it, and check its shape.

    Raises :class:`LegacyError` naming the file when it is unreadable, truncated, foreign (it names a
    class or function), not this format, or built with parameters other than ``params``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            db = _NoGlobalsUnpickler(f).load()
            trailing = f.read(1)
    except FileNotFoundError:
        raise LegacyError(f"{path}: no such file") from None
    except EOFError:
        what = "empty file" if path.stat().st_size == 0 else "ends before the data is complete"
        raise LegacyError(f"{path}: truncated pickle ({what})") from None
    except pickle.UnpicklingError as e:
        reason = str(e)
        if "truncated" in reason:
            raise LegacyError(f"{path}: truncated pickle ({reason})") from None
        raise LegacyError(f"{path}: not a CityWok legacy database ({reason}); nothing from it was run") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError, AttributeError) as e:
        raise LegacyError(f"{path}: damaged pickle ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise LegacyError(f"{path}: cannot read ({e.strerror or e})") from None
    if trailing:
        raise LegacyError(f"{path}: unexpected bytes after the pickle (not a CityWok legacy database)")
    _check_shape(path, db)
    if params is not None:
        theirs = db["params"]
        if theirs != params.to_dict():
            ours = params.to_dict()
            diff = {k: (theirs.get(k), ours.get(k)) for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k)}
            raise LegacyError(
                f"{path}: built with other fingerprint parameters (pickle, expected): "
                + ", ".join(f"{k}={a}/{b}" for k, (a, b) in sorted(diff.items()))
            )
    return db


def _check_shape(path: Path, db: object) -> None:
    """Cheap structural checks (the top level, every episode, a few postings): a full scan costs startup."""
    if not isinstance(db, dict):
        raise LegacyError(f"{path}: not a CityWok legacy database (top level is {type(db).__name__}, not dict)")
    missing = {"version", "season", "params", "episodes", "hashes"} - set(db)
    if missing:
        raise LegacyError(f"{path}: not a CityWok legacy database (missing {', '.join(sorted(missing))})")
    if db["version"] != LEGACY_VERSION:
        raise LegacyError(f"{path}: unsupported legacy format version {db['version']!r} (expected {LEGACY_VERSION})")
    if not isinstance(db["season"], int) or not isinstance(db["params"], dict):
        raise LegacyError(f"{path}: malformed header (season must be an int, params a dict)")
    if not isinstance(db["episodes"], list) or not isinstance(db["hashes"], dict):
        raise LegacyError(f"{path}: malformed data (episodes must be a list, hashes a dict)")
    for e in db["episodes"]:
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            raise LegacyError(f"{path}: malformed episode record {e!r}")
    if len(db["episodes"]) > MAX_SLOTS:
        raise LegacyError(f"{path}: {len(db['episodes'])} episodes; a season holds at most {MAX_SLOTS}")
    shared = db.get("shared", [])
    if not isinstance(shared, list) or not all(
        isinstance(seg, dict) and isinstance(seg.get("occurrences"), list)
        and all(isinstance(o, dict) and set(o) == {"episode_id", "start", "end"} for o in seg["occurrences"])
        for seg in shared
    ):
        raise LegacyError(f"{path}: malformed shared segments")
    for i, (h, postings) in enumerate(db["hashes"].items()):
        if i >= 16:
            break
        if not isinstance(h, int) or not isinstance(postings, list) or not all(
            isinstance(p, tuple) and len(p) == 2 for p in postings
        ):
            raise LegacyError(f"{path}: malformed hash entry {h!r}: {postings!r:.80}")


def new_season(season: int, params: FingerprintParams = DEFAULT_PARAMS) -> dict[str, Any]:
    """An empty season database; keys in this order so episode ids are pickled before the postings."""
    return {"version": LEGACY_VERSION, "season": season, "params": params.to_dict(), "episodes": [], "hashes": {}}


def write_season(path: Path, db: dict[str, Any]) -> int:
    """Write a season pickle atomically (temporary file, fsync, rename); returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(db, f, protocol=PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path.stat().st_size


def postings_by_episode(db: dict[str, Any]) -> dict[str, Hashes]:
    """Regroup the hash table per episode (the shape ``Shard.add_episode`` takes), checking every posting."""
    ids = [e["id"] for e in db["episodes"]]
    cols: dict[str, tuple[list[int], list[int]]] = {eid: ([], []) for eid in ids}
    for h, postings in db["hashes"].items():
        if not isinstance(h, int) or not 0 <= h < 1 << 32 or not isinstance(postings, list):
            raise LegacyError(f"malformed hash entry {h!r}")
        for p in postings:
            try:
                eid, t = p
                hs, ts = cols[eid]
            except (TypeError, ValueError, KeyError):
                raise LegacyError(f"hash {h}: posting {p!r} is not (episode id, frame) of a listed episode") from None
            if not isinstance(t, int) or t < 0:
                raise LegacyError(f"hash {h}: posting {p!r} has a bad time offset")
            hs.append(h)
            ts.append(t)
    out = {}
    for eid, (hs, ts) in cols.items():
        t = np.asarray(ts, np.uint32)
        order = np.argsort(t, kind="stable")
        out[eid] = Hashes(np.asarray(hs, np.uint32)[order], t[order])
    return out


def all_postings(table: HashTable, slot_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every posting as (hash, slot, frame) arrays, as ``Shard.all_postings`` gives them (shared segments)."""
    n = sum(len(v) for v in table.values())
    h = np.empty(n, np.uint32)
    slot = np.empty(n, np.uint32)
    t = np.empty(n, np.uint32)
    i = 0
    for key, postings in table.items():
        for eid, pt in postings:
            h[i], slot[i], t[i] = key, slot_of[eid], pt
            i += 1
    return h, slot, t


def to_episode(slot: int, e: dict[str, Any]) -> Episode:
    return Episode(slot, e["id"], e.get("title") or e["id"], float(e.get("duration", 0.0)), e.get("sha256", ""),
                   int(e.get("hashes", 0)))


# -- serving ----------------------------------------------------------------------------------------


class PickleSeason:
    """One season served from its pickle's hash table; ``lookup`` answers exactly as ``Shard.lookup``.

    Episode slots are positions in the pickle's episode list, the order migrate adds them to a shard.
    Read-only: uploads go to LMDB shards, never into a pickle being served.
    """

    writable = False

    def __init__(self, path: Path, db: dict[str, Any]) -> None:
        self.path = Path(path)
        self.table: HashTable = db["hashes"]
        self.season: int = db["season"]
        self._episodes = [to_episode(i, e) for i, e in enumerate(db["episodes"])]
        self._slot = {e.id: e.slot for e in self._episodes}
        self._postings: int | None = None
        self._shared: list[dict[str, Any]] = list(db.get("shared", []))

    def episodes(self) -> list[Episode]:
        return list(self._episodes)

    def episode(self, episode_id: str) -> Episode | None:
        slot = self._slot.get(episode_id)
        return None if slot is None else self._episodes[slot]

    def get_shared(self) -> list[dict[str, Any]]:
        return list(self._shared)

    def intact(self) -> str | None:
        """Always: the pickle was read whole into memory when the season was opened."""
        return None

    def meta(self) -> dict[str, Any]:
        """The counts ``Shard.meta()`` records (postings are counted on first use: a full pass)."""
        return {"season": self.season, "hash_count": len(self.table), "posting_count": self.posting_count(),
                "episode_count": len(self._episodes), "total_seconds": sum(e.duration for e in self._episodes)}

    def lookup(self, hashes: Hashes, max_postings: int = MAX_POSTINGS) -> Postings:
        """Every stored posting of the query's hashes, paired with each query time of that hash."""
        return lookup_seasons([self], hashes, max_postings)

    def find_postings(self, query: Query, max_postings: int = MAX_POSTINGS, triplets: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``Shard.find_postings``, a hash is skipped when the group of hashes it shares
        (``hash >> GROUP_BITS``) holds more than ``max_postings`` postings, so both modes weigh exactly
        the same evidence. Pickles hold no triplets."""
        if triplets:
            z = np.zeros(0, np.uint32)
            return z, z, z
        found_h: list[int] = []
        slots: list[int] = []
        dbt: list[int] = []
        table, slot_of = self.table, self._slot
        crowded: dict[int, bool] = {}
        for h in query.distinct.tolist():
            postings = table.get(h)
            if not postings:
                continue
            b = h >> GROUP_BITS
            if b not in crowded:
                base = b << GROUP_BITS
                crowded[b] = sum(len(table.get(base + i, ())) for i in range(1 << GROUP_BITS)) > max_postings
            if crowded[b]:
                continue
            for eid, pt in postings:
                slot = slot_of.get(eid)
                if slot is None:  # a posting of an unlisted episode (damaged file): no evidence
                    continue
                found_h.append(h)
                slots.append(slot)
                dbt.append(pt)
        return np.asarray(found_h, np.uint32), np.asarray(slots, np.int64), np.asarray(dbt, np.int64)

    def posting_count(self) -> int:
        if self._postings is None:
            self._postings = sum(len(v) for v in self.table.values())
        return self._postings

    def nbytes(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        self.table = {}


class PickleLibrary(Library):
    """Every season pickle of a ``DATA_DIR``, with the store's ``Library`` interface (USE_LMDB=false).

    ``writable`` is False: the server should refuse uploads in this mode rather than create shards.
    """

    writable = False

    def __init__(self, shards: dict[int, SeasonStore], params: FingerprintParams,
                 version: str = LIBRARY_VERSION) -> None:
        super().__init__(version, shards, params)


def open_library(data_dir: Path, params: FingerprintParams = DEFAULT_PARAMS,
                 max_seasons: int | None = None, only: Collection[int] | None = None) -> PickleLibrary:
    """Load every ``DATA_DIR/season_NN.pkl`` for serving (the ``USE_LMDB=false`` mode).

    Raises :class:`LegacyError` when there is no season pickle or one of them cannot be used.
    """
    seasons = pickle_seasons(data_dir)
    if not seasons:
        raise LegacyError(f"no legacy season databases (season_NN.pkl) in {data_dir}")
    seasons = layout.pick_seasons(seasons, max_seasons, only)
    shards: dict[int, SeasonStore] = {}
    for n, path in seasons.items():
        db = load_season(path, params)
        if db["season"] != n:
            raise LegacyError(f"{path}: holds season {db['season']}, but its name says {n}")
        shards[n] = PickleSeason(path, db)
    return PickleLibrary(shards, params)

