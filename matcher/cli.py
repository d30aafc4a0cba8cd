"""`citywok ingest`, `citywok identify` and `citywok serve`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from citywok import layout, settings
from citywok.cli import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="fingerprint episode files or folders into a season shard")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    p.add_argument("--season", type=layout.parse_season, required=True, help="1 to 99")
    p.add_argument("--data-dir", type=Path, help="default: $DATA_DIR or ./data")
    p.add_argument("--db-version", help="version folder to write (default: $DB_VERSION or v1)")
    p.add_argument("--workers", type=int, help="parallel decoders (default: all cores)")
    p.add_argument("--remove", action="append", default=[], metavar="EPISODE_ID", help="remove an episode")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--format", choices=("lmdb", "pickle"), default="lmdb",
                   help="pickle: write the legacy DATA_DIR/season_NN.pkl (docs/legacy-format.md)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("identify", help="which episode, and where in it, is this clip from")
    p.add_argument("clip", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable answer")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--max-seasons", type=int)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("migrate", help="legacy season pickles -> LMDB season shards, with a size report")
    p.add_argument("src", type=Path, metavar="SRC_DIR", help="folder holding season_NN.pkl")
    p.add_argument("dst", type=Path, metavar="DST_DIR", help="folder to write season_NN.lmdb into")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("validate", help="compare legacy pickles with their LMDB shards, per season")
    p.add_argument("src", type=Path, metavar="SRC_DIR")
    p.add_argument("dst", type=Path, metavar="DST_DIR")
    p.add_argument("--samples", type=int, default=1000, help="random hashes compared per season")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("serve", help="run the matcher HTTP service")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--data-dir", type=Path)
    p.set_defaults(func=cmd_serve)


def _settings(args: argparse.Namespace) -> settings.Settings:
    return settings.load().with_overrides(
        data_dir=getattr(args, "data_dir", None),
        db_version=getattr(args, "db_version", None),
        max_seasons=getattr(args, "max_seasons", None),
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from citywok.matcher.legacy.pickles import LegacyError
    from citywok.matcher.store.ingest import ingest_paths, media_files, remove_episodes
    from tqdm import tqdm

    s = _settings(args)
    if not args.paths and not args.remove:
        raise CommandError("name files or folders to ingest, or --remove EPISODE_ID", 2)
    if args.remove and args.format == "pickle":
        raise CommandError("--remove works on LMDB shards only", 2)
    if args.remove:
        removed = remove_episodes(args.remove, args.season, s.data_dir, s.db_version)
        for eid, was in removed.items():
            print(f"{eid}: {'removed' if was else 'not in season'}")
    if not args.paths:
        return 0
    try:
        total = len(list(media_files(args.paths)))
    except FileNotFoundError as e:
        raise CommandError(str(e), 2) from None
    started = time.monotonic()
    audio = 0.0
    bar = tqdm(total=total, unit="ep", disable=args.no_progress, file=sys.stderr)

    def on_result(r) -> None:  # noqa: ANN001
        nonlocal audio
        if r.status in {"added", "replaced"}:
            audio += r.seconds
        elapsed = max(1e-6, time.monotonic() - started)
        bar.set_postfix_str(f"{audio / 3600:.2f} h ingested, {audio / elapsed:.0f}x real time")
        bar.update(1)
        if r.status == "failed":
            bar.write(f"FAILED {r.path}: {r.error}", file=sys.stderr)

    try:
        results = ingest_paths(args.paths, args.season, s.data_dir, s.db_version, workers=args.workers,
                               on_result=on_result, fmt=args.format)
    except LegacyError as e:
        raise CommandError(str(e)) from None
    bar.close()
    counts = {k: sum(r.status == k for r in results) for k in ("added", "replaced", "skipped", "failed")}
    elapsed = time.monotonic() - started
    where = "pickle" if args.format == "pickle" else s.db_version
    print(f"season {args.season:02d} ({where}): " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {audio / 3600:.2f} h of audio in {elapsed:.1f} s")
    return 1 if counts["failed"] else 0


def cmd_identify(args: argparse.Namespace) -> int:
    from citywok.matcher.engine.decode import DecodeError, decode
    from citywok.matcher.engine.identify import DEFAULT_POLICY, ClipTooShort, identify_pcm
    from citywok.matcher.legacy.pickles import LegacyError, open_library
    from citywok.matcher.store.library import Library
    from citywok.matcher.store.shard import ShardError

    s = _settings(args)
    vdir = layout.current_dir(s.data_dir) if s.use_lmdb else None  # USE_LMDB=false: legacy pickles
    if s.use_lmdb and (vdir is None or not layout.is_complete(vdir)):
        raise CommandError(f"nothing to search in {s.data_dir}: run `citywok ingest` or `citywok fetch` first")
    t0 = time.perf_counter()
    try:
        lib = (Library.open(vdir, max_seasons=s.max_seasons, only=s.seasons) if vdir is not None
               else open_library(s.data_dir, max_seasons=s.max_seasons, only=s.seasons))
        with lib:
            pcm = decode(args.clip, lib.params.sample_rate, max_seconds=30)
            result = identify_pcm(lib, pcm)
    except LegacyError as e:
        raise CommandError(str(e)) from None
    except (DecodeError, ClipTooShort, ShardError) as e:
        raise CommandError(f"{args.clip}: {e}", 2) from None
    out = result.to_json()
    out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if args.json:
        print(json.dumps(out, indent=2))
    elif result.ambiguous:
        print(f"ambiguous: {result.shared_segment}; the clip could be any of")
        for c in result.episodes:
            print(f"  {c.episode_id} (season {c.season}) at {_clock(c.offset_seconds)}, {c.score} hashes")
    elif result.match:
        print(f"{result.episode_id} (season {result.season}) at {_clock(result.offset_seconds)} "
              f"[offset {result.offset_seconds:.2f} s, confidence {result.confidence:.2f}, "
              f"{result.score} aligned hashes, spread {result.spread}]")
        if result.also_at:
            print(f"  the same audio is also at {', '.join(_clock(t) for t in result.also_at)} in this episode")
        for c in result.candidates[1:]:
            print(f"  runner-up: {c.episode_id} (season {c.season}) at {_clock(c.offset_seconds)}, {c.score} hashes")
    else:
        print(f"no match (at best {result.score} aligned hashes, spread {result.spread}; a match needs a spread of"
              f" {DEFAULT_POLICY.min_score} and a clear lead over every other episode)")
    return 0 if result.match else 3


def cmd_migrate(args: argparse.Namespace) -> int:
    from citywok.matcher.legacy.migrate import format_migrate, migrate
    from citywok.matcher.legacy.pickles import LegacyError

    try:
        reports = migrate(args.src, args.dst, on_season=lambda r: print(f"season {r.season:02d}: {r.status}",
                                                                          file=sys.stderr, flush=True))
    except LegacyError as e:
        raise CommandError(str(e), 2) from None
    print("\n".join(format_migrate(reports)))
    return 1 if any(r.status == "failed" for r in reports) else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from citywok.matcher.legacy.migrate import format_validate, validate
    from citywok.matcher.legacy.pickles import LegacyError

    try:
        reports = validate(args.src, args.dst, samples=args.samples, seed=args.seed)
    except LegacyError as e:
        raise CommandError(str(e), 2) from None
    print("\n".join(format_validate(reports)))
    return 0 if all(r.passed for r in reports) else 1


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:05.2f}"


def cmd_serve(args: argparse.Namespace) -> int:
    import multiprocessing.forkserver

    # The identify workers are forked from a fork server that preloads the engine: start it first, so
    # that it imports while this process does the same and opens the shards (startup to ready halves).
    multiprocessing.set_forkserver_preload(["citywok.matcher.service.workers"])
    multiprocessing.forkserver.ensure_running()
    from citywok.matcher.service import server

    return server.main(args)
