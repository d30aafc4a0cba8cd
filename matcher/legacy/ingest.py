"""``citywok ingest --format pickle``: episode files into the legacy ``DATA_DIR/season_NN.pkl``
(docs/legacy-format.md), through the store's ingest with a pickle season as the writer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.legacy.pickles import PickleSeasonWriter, pickle_path
from citywok.matcher.store.ingest import IngestResult, ingest_files, media_files


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
