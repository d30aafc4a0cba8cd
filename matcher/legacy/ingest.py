"""``citywok ingest --format pickle``: episode files into the legacy ``DATA_DIR/season_NN.pkl``
(docs/legacy-format.md), through the store's ingest with a pickle season as the writer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.legacy.pickles import (
    HashTable,
    LegacyError,
    all_postings,
    load_season,
    new_season,
    pickle_path,
    to_episode,
    write_season,
)
from citywok.matcher.store.ingest import IngestResult, ingest_files, media_files
from citywok.matcher.store.season import Episode, NewEpisode


class PickleSeasonWriter:
    """Ingest's pickle sink: the part of ``Shard``'s interface ingest and ``shared.update`` use; written on close."""

    writable = True

    def __init__(self, path: Path, params: FingerprintParams, season: int) -> None:
        self.path = Path(path)
        self.params = params
        self.db = load_season(path, params) if self.path.exists() else new_season(season, params)
        if self.db["season"] != season:
            raise LegacyError(f"{path} holds season {self.db['season']}, not {season}")
        self._dirty = False

    def episode(self, episode_id: str) -> Episode | None:
        for slot, e in enumerate(self.db["episodes"]):
            if e["id"] == episode_id:
                return to_episode(slot, e)
        return None

    def add_episode(
        self, episode_id: str, hashes: Hashes, duration: float, sha256: str, title: str | None = None
    ) -> Episode:
        """Add (or replace) one episode's postings in memory."""
        table: HashTable = self.db["hashes"]
        episodes: list[dict[str, Any]] = self.db["episodes"]
        if any(e["id"] == episode_id for e in episodes):
            self._remove(episode_id)
        eid = str(episode_id)
        record = {"id": eid, "title": title or eid, "duration": float(duration), "sha256": sha256,
                  "hashes": len(hashes)}
        episodes.append(record)
        for h, t in zip(hashes.hash.tolist(), hashes.t.tolist(), strict=True):
            table.setdefault(h, []).append((eid, t))
        self._dirty = True
        return to_episode(len(episodes) - 1, record)

    def add_episodes(self, new: Sequence[NewEpisode]) -> list[Episode]:
        """Add (or replace) several episodes, as ``Shard.add_episodes`` does."""
        return [self.add_episode(n.id, n.hashes, n.duration, n.sha256, n.title) for n in new]

    def episodes(self) -> list[Episode]:
        return [to_episode(slot, e) for slot, e in enumerate(self.db["episodes"])]

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return all_postings(self.db["hashes"], {e["id"]: i for i, e in enumerate(self.db["episodes"])})

    def shared_recorded(self) -> bool:
        return "shared" in self.db

    def get_shared(self) -> list[dict[str, Any]]:
        return list(self.db.get("shared", []))

    def put_shared(self, segments: list[dict[str, Any]]) -> None:
        """Record the season's shared segments (``store.shared.update``), in the optional "shared" key."""
        self.db["shared"] = json.loads(json.dumps(segments))  # plain floats: numpy scalars would need globals
        self._dirty = True

    def _remove(self, episode_id: str) -> None:
        table: HashTable = self.db["hashes"]
        self.db["episodes"][:] = [e for e in self.db["episodes"] if e["id"] != episode_id]
        for h in list(table):
            kept = [p for p in table[h] if p[0] != episode_id]
            if kept:
                table[h] = kept
            else:
                del table[h]

    def close(self) -> None:
        if self._dirty:
            write_season(self.path, self.db)
            self._dirty = False


def ingest_pickle(
    paths: Iterable[Path],
    season: int,
    data_dir: Path,
    params: FingerprintParams = DEFAULT_PARAMS,
    workers: int | None = None,
    on_result: Callable[[IngestResult], None] | None = None,
    titles: dict[str, str] | None = None,
) -> list[IngestResult]:
    """Ingest files into ``season``'s pickle: skip unchanged episodes, replace changed ones, add new ones."""
    files = list(media_files(paths))
    writer = PickleSeasonWriter(pickle_path(data_dir, season), params, season)
    return ingest_files(writer, files, params, workers, on_result, titles)
