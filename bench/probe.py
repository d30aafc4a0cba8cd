"""In-process probe of the engine on the benchmarks' own clips: right answers and identify time per row,
with MatchPolicy and ScaleGrid values overridden from the command line. For trying a change to the
decision or the scale search in a minute, before the full benchmarks (which go through the server and run
the peer) confirm it.

    python -m bench.probe series ROW_REGEX [--max 50] [--unindexed 0] [--grid k=v] [--policy k=v] [--show]
    python -m bench.probe music ROW_REGEX ...

``series`` uses bench.series' clips and defaults (its episodes ingested once into a cached DATA_DIR, or
``--data DIR``, for example a padded one of bench.series' scaling table); right = episode and offset within
0.25 s. ``music`` uses bench.engine's clips and corpus split; right = track and offset within 0.1 s, and
"same audio" also counts an answer where the track holds the clip's audio (bench.engine.same_audio).
Times are identify_pcm's own (decode excluded). ``--show`` prints each miss with its runner-ups.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import DEFAULT_POLICY, Identification, MatchPolicy, identify_pcm
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.store.ingest import ingest_paths
from citywok.matcher.store.library import Library
from citywok.matcher.store.shard import FORMAT_VERSION

from bench import engine
from bench.series_cut import clip_folder, cut_clips
from bench.series_gen import build_series
from bench.series_http import TOLERANCE
from citywok import layout

# a new index, a new cache: a stale one would be searched without what the engine now stores
PROBE = engine.CACHE / "probe" / f"index-{DEFAULT_PARAMS.digest()}-shard{FORMAT_VERSION}-triplets"


@dataclass(frozen=True)
class Case:
    path: str
    row: str
    truth: str | None  # None: unindexed audio
    start: float
    seconds: float


@dataclass
class Row:
    right: int = 0
    same_audio: int = 0
    total: int = 0
    ms: list[float] = field(default_factory=list)


def _value(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def policy_from(grid: list[str], policy: list[str]) -> MatchPolicy:
    """DEFAULT_POLICY with ``name=value`` overrides of its ScaleGrid and of itself; an unknown name is an error."""
    def parsed(pairs: list[str], known: set[str]) -> dict[str, int | float]:
        out = {}
        for pair in pairs:
            name, _, text = pair.partition("=")
            if name not in known or not text:
                raise SystemExit(f"not a setting: {pair!r} (one of {', '.join(sorted(known))})")
            out[name] = _value(text)
        return out
    g = replace(DEFAULT_POLICY.grid, **parsed(grid, {f.name for f in fields(DEFAULT_POLICY.grid)}))
    return replace(DEFAULT_POLICY, grid=g, **parsed(policy, {f.name for f in fields(MatchPolicy)} - {"grid"}))


def series_cases(data: Path | None) -> tuple[Path, list[Case]]:
    """bench.series' clips (its defaults) and a DATA_DIR holding its indexed episodes."""
    episodes, split = build_series([p for p, _ in engine.corpus_tracks(engine.CACHE / "corpus")], 24, 6, 7)
    indexed = [e for e in episodes if e.indexed]
    folder = clip_folder(Path(indexed[0].path).parent, 24, 6, 50, 1000, "3,5")
    clips = cut_clips(episodes, split, [3.0, 5.0], 50, 1000, 7, folder)
    if data is None:
        data = PROBE / "series-data"
        if not (data / "fingerprints" / "current").exists():
            ingest_paths([Path(e.path) for e in indexed], 1, data, "v1")
    cases = [Case(c.path, c.row if c.episode else f"unindexed {c.row}", c.episode, c.start, c.seconds) for c in clips]
    return layout.version_dir(data, "v1"), cases


def music_cases(data: Path | None) -> tuple[Path, list[Case]]:
    """bench.engine's clips (its defaults and corpus split) and a DATA_DIR holding its indexed tracks."""
    tracks = engine.corpus_tracks(engine.CACHE / "corpus")
    order = np.random.default_rng(1).permutation(len(tracks))
    held = [tracks[i][0] for i in order[: engine.HOLD_OUT]]
    indexed = [tracks[i][0] for i in order[engine.HOLD_OUT:]]
    plan = hashlib.sha256(repr(engine.CONDITIONS).encode()).hexdigest()[:8]
    folder = engine.CACHE / f"bench-clips-100-500-{len(indexed)}-seed7-{plan}"
    clips = engine.make_clips(indexed, held, 100, 500, folder, 7)
    if data is None:
        data = PROBE / "music-data"
        if not (data / "fingerprints" / "current").exists():
            ingest_paths(indexed, 1, data, "bench")
    seconds = {name: float(secs) for name, secs, _ in engine.CONDITIONS}
    cases = [Case(str(c.path), c.condition, c.track, c.start, seconds.get(c.condition, 5.0)) for c in clips]
    return layout.version_dir(data, "bench"), cases


def chosen(cases: list[Case], rows: str, most: int, unindexed: int) -> Iterator[Case]:
    """Up to ``most`` cases of each row matching ``rows``, and up to ``unindexed`` unindexed ones of those rows
    (music has one unindexed row, taken whatever ``rows`` says)."""
    rx = re.compile(rows)
    taken: dict[str, int] = {}
    for c in cases:
        cap = unindexed if c.truth is None else most
        if (c.truth is None and unindexed and c.row == "unindexed 5 s") or rx.search(c.row.removeprefix("unindexed ")):
            if taken.get(c.row, 0) < cap:
                taken[c.row] = taken.get(c.row, 0) + 1
                yield c


def judge(case: Case, r: Identification, tolerance: float, tracks: dict[str, Path]) -> tuple[bool, bool]:
    """(right, right or the same audio at the answer's offset); for unindexed audio, (matched, matched)."""
    if case.truth is None:
        return r.match, r.match
    right = (r.match and not r.ambiguous and r.episode_id == case.truth
             and abs(r.offset_seconds - case.start) <= tolerance)
    if right or not tracks or r.episode_id != case.truth or r.offset_seconds is None:
        return right, right
    clip = engine.Clip(Path(case.path), case.truth, case.start, case.row)
    return False, engine.same_audio(tracks[case.truth], clip, r.offset_seconds, case.seconds)


def run(args: argparse.Namespace) -> None:
    data = Path(args.data) if args.data else None
    vdir, cases = series_cases(data) if args.corpus == "series" else music_cases(data)
    tolerance = TOLERANCE if args.corpus == "series" else 0.1
    tracks = {} if args.corpus == "series" else {p.stem: p for p, _ in engine.corpus_tracks(engine.CACHE / "corpus")}
    policy = policy_from(args.grid, args.policy)
    rows: dict[str, Row] = {}
    with Library.open(vdir) as lib:
        for case in chosen(cases, args.rows, args.max, args.unindexed):
            pcm = decode(case.path, lib.params.sample_rate, max_seconds=30)
            t0 = time.perf_counter()
            r = identify_pcm(lib, pcm, policy)
            row = rows.setdefault(case.row, Row())
            row.ms.append((time.perf_counter() - t0) * 1000)
            right, same = judge(case, r, tolerance, tracks)
            row.right, row.same_audio, row.total = row.right + right, row.same_audio + same, row.total + 1
            if args.show and case.truth is not None and not right:
                print(f"miss {case.row}: {Path(case.path).name} {case.truth} at {case.start:.2f} -> "
                      f"{r.episode_id if r.match else 'no match'} at {r.offset_seconds} (time {r.time_scale}, pitch "
                      f"{r.pitch_scale}, spread {r.spread}); runner-ups "
                      f"{[(c.episode_id, c.score, c.spread) for c in r.candidates[1:3]]}", flush=True)
    print(f"{'row':40} {'clips':>5} {'right':>7} {'same audio':>10} {'p50 ms':>7} {'p90 ms':>7}")
    for name, row in rows.items():
        print(f"{name:40} {row.total:5d} {100 * row.right / row.total:6.1f}% {100 * row.same_audio / row.total:9.1f}% "
              f"{np.percentile(row.ms, 50):7.1f} {np.percentile(row.ms, 90):7.1f}")
    print("unindexed rows: the share matched (false matches); times: identify_pcm in process, decode excluded")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", choices=["series", "music"])
    ap.add_argument("rows", nargs="?", default=".", help="regular expression of the rows to run")
    ap.add_argument("--max", type=int, default=50, help="clips per row")
    ap.add_argument("--unindexed", type=int, default=0, help="unindexed clips per row (music: of its one row)")
    ap.add_argument("--grid", action="append", default=[], metavar="NAME=VALUE", help="a ScaleGrid value")
    ap.add_argument("--policy", action="append", default=[], metavar="NAME=VALUE", help="a MatchPolicy value")
    ap.add_argument("--data", help="a DATA_DIR to search instead of the cached one (series: version v1)")
    ap.add_argument("--show", action="store_true", help="print every miss")
    run(ap.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
