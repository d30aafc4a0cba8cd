"""Legacy pickles -> LMDB season shards (``citywok migrate``), and the check that they agree (``validate``).

A season is built beside its final name (``season_NN.lmdb.partial``) and renamed into place only once
the shard passes ``Shard.check()``, so an interrupted migration never leaves a season looking finished,
and a re-run skips the seasons that are.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import numpy as np
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS, FingerprintParams
from citywok.matcher.legacy import pickles as legacy
from citywok.matcher.store import shared
from citywok.matcher.store.shard import Shard, ShardError, repack

from citywok import layout

PARTIAL = ".partial"
BUILD = ".build"
VALIDATE_SAMPLES = 1000


@dataclass
class MigrateReport:
    season: int
    status: str  # migrated | skipped | failed
    hashes: int = 0
    postings: int = 0
    episodes: int = 0
    pickle_bytes: int = 0
    lmdb_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def reduction(self) -> float | None:
        """How much smaller the LMDB is than the pickle, in percent."""
        if not self.pickle_bytes or not self.lmdb_bytes:
            return None
        return 100.0 * (1 - self.lmdb_bytes / self.pickle_bytes)


@dataclass
class ValidateReport:
    season: int
    passed: bool
    pickle_hashes: int = 0
    lmdb_hashes: int = 0
    sampled: int = 0
    mismatched: int = 0
    problems: list[str] = field(default_factory=list)


def lmdb_bytes(path: Path) -> int:
    """Size of a shard on disk (its data file; the lock file is not data)."""
    f = Path(path) / layout.DATA_FILE
    return f.stat().st_size if f.is_file() else 0


# -- migrate ----------------------------------------------------------------------------------------


def migrate(
    src_dir: Path,
    dst_dir: Path,
    params: FingerprintParams = DEFAULT_PARAMS,
    on_season: Callable[[MigrateReport], None] | None = None,
) -> list[MigrateReport]:
    """Turn every ``src_dir/season_NN.pkl`` into ``dst_dir/season_NN.lmdb``; finished seasons are skipped.

    One bad season does not stop the others: it is reported ``failed`` and leaves nothing behind.
    """
    seasons = legacy.pickle_seasons(src_dir)
    if not seasons:
        raise legacy.LegacyError(f"no legacy season databases (season_NN.pkl) in {src_dir}")
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for n, pkl in seasons.items():
        r = migrate_season(pkl, dst_dir / layout.season_name(n), n, params)
        reports.append(r)
        if on_season:
            on_season(r)
    return reports


def migrate_season(pkl: Path, final: Path, season: int, params: FingerprintParams = DEFAULT_PARAMS) -> MigrateReport:
    """One season: load the pickle, add its episodes to a new shard, repack it, check it, rename it in."""
    t0 = time.monotonic()
    report = MigrateReport(season, "migrated", pickle_bytes=pkl.stat().st_size)
    if (final / layout.DATA_FILE).is_file():
        report.status = "skipped"
        report.lmdb_bytes = lmdb_bytes(final)
        try:
            with Shard.open(final, params) as shard:
                meta = shard.meta()
            report.hashes, report.postings, report.episodes = (
                meta["hash_count"], meta["posting_count"], meta["episode_count"])
        except ShardError as e:
            report.status, report.error = "failed", f"{final} exists but is not a usable shard: {e}"
        return report
    build = final.with_name(final.name + BUILD)
    partial = final.with_name(final.name + PARTIAL)
    for leftover in (build, partial):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        db = legacy.load_season(pkl, params)
        if db["season"] != season:
            raise legacy.LegacyError(f"{pkl}: holds season {db['season']}, but its name says {season}")
        per_episode = legacy.postings_by_episode(db)
        with Shard.create(build, params, season) as shard:
            for ep in db["episodes"]:
                shard.add_episode(ep["id"], per_episode[ep["id"]], float(ep.get("duration", 0.0)),
                                  ep.get("sha256", ""), ep.get("title"))
            shared.update(shard)  # what ingest records, so identify can name a shared segment
            repack(shard.env, partial)
        with Shard.open(partial, params) as shard:
            check = shard.check()
        expected = (len(db["hashes"]), sum(len(h) for h in per_episode.values()), len(db["episodes"]))
        got = (check["hash_count"], check["posting_count"], check["episode_count"])
        if not check["ok"] or got != expected:
            raise ShardError(f"{partial}: built shard does not check out (hashes, postings, episodes "
                             f"= {got}, expected {expected})")
        partial.rename(final)
    except (legacy.LegacyError, ShardError, lmdb.Error, OSError) as e:
        shutil.rmtree(partial, ignore_errors=True)
        report.status, report.error = "failed", str(e)
        return report
    finally:
        shutil.rmtree(build, ignore_errors=True)
    report.hashes, report.postings, report.episodes = expected
    report.lmdb_bytes = lmdb_bytes(final)
    report.seconds = time.monotonic() - t0
    return report


def format_migrate(reports: list[MigrateReport]) -> list[str]:
    """Per-season lines and a summary line, the size report ``citywok migrate`` prints."""
    lines = [f"{'season':>6} {'status':>8} {'episodes':>8} {'hashes':>10} {'postings':>10} "
             f"{'pickle':>10} {'lmdb':>10} {'reduction':>9} {'time':>7}"]
    for r in reports:
        red = f"{r.reduction:.1f}%" if r.reduction is not None else "-"
        lines.append(f"{r.season:>6} {r.status:>8} {r.episodes:>8} {r.hashes:>10} {r.postings:>10} "
                     f"{_mb(r.pickle_bytes):>10} {_mb(r.lmdb_bytes):>10} {red:>9} {r.seconds:>6.1f}s")
        if r.error:
            lines.append(f"       {r.error}")
    ok = [r for r in reports if r.status != "failed"]
    pk, lm = sum(r.pickle_bytes for r in ok), sum(r.lmdb_bytes for r in ok)
    red = _change(pk, lm)
    counts = Counter(r.status for r in reports)
    lines.append(f"summary: {counts['migrated']} migrated, {counts['skipped']} skipped, {counts['failed']} failed; "
                 f"{sum(r.episodes for r in ok)} episodes, {sum(r.hashes for r in ok)} hashes; "
                 f"pickle {_mb(pk)} -> lmdb {_mb(lm)} ({red})")
    return lines


def _change(pickle_bytes: int, lmdb_bytes: int) -> str:
    if not pickle_bytes or not lmdb_bytes:
        return "no size to compare"
    r = 100.0 * (1 - lmdb_bytes / pickle_bytes)
    return f"{r:.1f}% smaller" if r >= 0 else f"{-r:.1f}% larger"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


# -- validate ---------------------------------------------------------------------------------------


def sample_hashes(keys: list[int], n: int = VALIDATE_SAMPLES, seed: int = 0) -> list[int]:
    """A reproducible sample of ``n`` hashes (all of them when there are fewer)."""
    ordered = sorted(keys)
    if len(ordered) <= n:
        return ordered
    return sorted(random.Random(seed).sample(ordered, n))


def validate(
    src_dir: Path,
    dst_dir: Path,
    params: FingerprintParams = DEFAULT_PARAMS,
    samples: int = VALIDATE_SAMPLES,
    seed: int = 0,
    on_season: Callable[[ValidateReport], None] | None = None,
) -> list[ValidateReport]:
    """Compare each season pickle with its shard: hash counts, episodes, and sampled posting lists."""
    seasons = legacy.pickle_seasons(src_dir)
    if not seasons:
        raise legacy.LegacyError(f"no legacy season databases (season_NN.pkl) in {src_dir}")
    reports = []
    for n, pkl in seasons.items():
        r = validate_season(pkl, Path(dst_dir) / layout.season_name(n), n, params, samples, seed)
        reports.append(r)
        if on_season:
            on_season(r)
    return reports


def validate_season(pkl: Path, shard_path: Path, season: int, params: FingerprintParams = DEFAULT_PARAMS,
                    samples: int = VALIDATE_SAMPLES, seed: int = 0) -> ValidateReport:
    r = ValidateReport(season, passed=False)
    try:
        db = legacy.load_season(pkl, params)
        shard = Shard.open(shard_path, params)
    except (legacy.LegacyError, ShardError) as e:
        r.problems.append(str(e))
        return r
    with shard:
        table: legacy.HashTable = db["hashes"]
        check = shard.check()
        r.pickle_hashes, r.lmdb_hashes = len(table), check["hash_count"]
        if r.pickle_hashes != r.lmdb_hashes:
            r.problems.append(f"hash count differs: pickle {r.pickle_hashes}, lmdb {r.lmdb_hashes}")
        if not check["ok"]:
            m = check["meta"]
            r.problems.append(f"shard does not match its own metadata (hashes, postings, episodes counted "
                              f"{check['hash_count']}, {check['posting_count']}, {check['episode_count']}; "
                              f"recorded {m['hash_count']}, {m['posting_count']}, {m['episode_count']})")
        episodes = {e.slot: e.id for e in shard.episodes()}
        pickle_ids = sorted(e["id"] for e in db["episodes"])
        if sorted(episodes.values()) != pickle_ids:
            r.problems.append(f"episode lists differ: pickle {pickle_ids}, lmdb {sorted(episodes.values())}")
        sample = sample_hashes(list(table), samples, seed)
        r.sampled = len(sample)
        stored = _shard_postings(shard, sample, episodes)
        for h, got in zip(sample, stored, strict=True):
            want = Counter((str(e), int(t)) for e, t in table[h])
            if got != want:
                r.mismatched += 1
                if r.mismatched <= 3:
                    r.problems.append(f"hash {h}: pickle {sorted(want.elements())}, lmdb {sorted(got.elements())}")
        if r.mismatched > 3:
            r.problems.append(f"... {r.mismatched} of {r.sampled} sampled hashes differ")
    r.passed = not r.problems
    return r


def _shard_postings(shard: Shard, sample: list[int], episodes: dict[int, str]) -> list[Counter[tuple[str, int]]]:
    """The shard's posting list of each sampled hash as a multiset of (episode id, frame).

    One batched lookup: each sampled hash gets its index as its "query time", which tells the answers apart.
    """
    out: list[Counter[tuple[str, int]]] = [Counter() for _ in sample]
    if not sample:
        return out
    q = Hashes(np.asarray(sample, np.uint32), np.arange(len(sample), dtype=np.uint32))
    p = shard.lookup(q, max_postings=1 << 31)
    for i, slot, t in zip(p.query_t.tolist(), p.slot.tolist(), p.db_t.tolist(), strict=True):
        out[i][(episodes.get(slot, f"<unknown slot {slot}>"), t)] += 1
    return out


def format_validate(reports: list[ValidateReport]) -> list[str]:
    lines = []
    for r in reports:
        verdict = "PASSED" if r.passed else "FAILED"
        lines.append(f"season {r.season:02d}: {verdict}  hashes pickle {r.pickle_hashes} / lmdb {r.lmdb_hashes}; "
                     f"{r.sampled - r.mismatched}/{r.sampled} sampled posting lists identical")
        lines.extend(f"    {p}" for p in r.problems)
    failed = sum(not r.passed for r in reports)
    lines.append(f"summary: {len(reports) - failed} passed, {failed} failed")
    return lines
