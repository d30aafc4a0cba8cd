"""`citywok ingest`, `identify`, `serve`, `migrate` and `validate` (`episodes`, `versions` and `use` are in
:mod:`citywok.matcher.catalog`)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from citywok.matcher import catalog
from citywok.matcher.words import answer_lines, plural

from citywok import layout, settings
from citywok.command import EXIT_NO_MATCH, Subcommands, int_in
from citywok.errors import EXIT_FAILED, EXIT_USAGE, CommandError

URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def season_arg(text: str) -> int:
    """--season: what layout.parse_season takes, refused by argparse in its words."""
    try:
        return layout.parse_season(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


SEASON = season_arg
POSITIVE = int_in(1, None, "number")
DATA_DIR_HELP = "data folder (default: $DATA_DIR or ./data)"


def version_option(p: argparse.ArgumentParser, what: str) -> None:
    """The fingerprint version, spelled ``--db-version`` on every command."""
    p.add_argument("--db-version", metavar="VERSION", help=f"{what} (default: $DB_VERSION, else v1)")


def register(sub: Subcommands) -> None:
    """Add this part's subcommands, and the catalogue's."""
    _ingest_parser(sub)
    _identify_parser(sub)
    _migrate_parser(sub)
    _validate_parser(sub)
    _serve_parser(sub)
    catalog.register(sub)


def _ingest_parser(sub: Subcommands) -> None:
    p = sub.add_parser("ingest", help="fingerprint episode files or folders into a season shard",
                       description="Fingerprint episodes into DATA_DIR/fingerprints/VERSION/season_NN.lmdb. "
                       "Ids and titles come from the file names ('Show - S01E02 - Title.mkv', "
                       "'Show.S01E02.Title.720p.WEB-DL.x264-GRP.mkv') or from --titles.")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="episode files, or folders searched for them")
    p.add_argument("--season", type=SEASON, required=True, help="season number, 1-99 (required)")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    version_option(p, "version folder to write")
    p.add_argument("--titles", type=Path, metavar="FILE",
                   help="episode titles: CSV rows 'S01E02,Title' or JSON {\"S01E02\": \"Title\"}"
                   " (default: from the file names)")
    p.add_argument("--workers", type=POSITIVE, help="parallel decoders (default: every core)")
    p.add_argument("--remove", action="append", default=[], metavar="EPISODE_ID",
                   help="remove this episode from the season (repeatable; default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: one on stderr)")
    p.add_argument("--format", choices=("lmdb", "pickle"), default="lmdb",
                   help="lmdb (default), or pickle: the legacy DATA_DIR/season_NN.pkl (docs/legacy-format.md)")
    p.set_defaults(func=cmd_ingest)


def _identify_parser(sub: Subcommands) -> None:
    p = sub.add_parser("identify", help="which episode, and where in it, is this clip from",
                       description="Identify a clip against the served version (`current`, or --db-version).")
    p.add_argument("clip", metavar="CLIP|URL", help="an audio or video file (3-10 s is plenty), or a link to one")
    p.add_argument("--json", action="store_true", help="print the answer (or the error) as the HTTP API's JSON")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    version_option(p, "version to search instead of `current`")
    p.add_argument("--max-seasons", type=POSITIVE,
                   help="search only the first N seasons (default: $MAX_SEASONS, else all)")
    p.set_defaults(func=cmd_identify)


def _migrate_parser(sub: Subcommands) -> None:
    p = sub.add_parser("migrate", help="legacy season pickles -> a servable LMDB version, with a size report")
    p.add_argument("src", type=Path, metavar="SRC_DIR", help="folder holding season_NN.pkl")
    p.add_argument("dst", type=Path, nargs="?", metavar="DST_DIR",
                   help="version folder to write (default: DATA_DIR/fingerprints/DB_VERSION)")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    version_option(p, "version to write when DST_DIR is not given")
    p.set_defaults(func=cmd_migrate)


def _validate_parser(sub: Subcommands) -> None:
    p = sub.add_parser("validate", help="compare legacy pickles with their LMDB shards, per season")
    p.add_argument("src", type=Path, metavar="SRC_DIR", help="folder holding season_NN.pkl")
    p.add_argument("dst", type=Path, metavar="DST_DIR", help="folder holding season_NN.lmdb")
    p.add_argument("--samples", type=POSITIVE, default=1000, help="random hashes compared per season (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sample (default: 0)")
    p.set_defaults(func=cmd_validate)


def _serve_parser(sub: Subcommands) -> None:
    p = sub.add_parser("serve", help="run the matcher HTTP service",
                       description="Serve `current` (or the pinned --db-version) over HTTP; other settings are "
                       "environment variables, listed in matcher/service/server.py.")
    p.add_argument("--host", default=None, help="address to listen on (default: $HOST, else 0.0.0.0)")
    p.add_argument("--port", type=int_in(0, 65535, "port"), default=None, help="port (default: $PORT, else 8000)")
    p.add_argument("--data-dir", type=Path, help=DATA_DIR_HELP)
    version_option(p, "serve this version, not what `current` points at")
    p.set_defaults(func=cmd_serve)


def _settings(args: argparse.Namespace) -> settings.Settings:
    return settings.load().with_overrides(
        data_dir=getattr(args, "data_dir", None),
        db_version=getattr(args, "db_version", None),
        max_seasons=getattr(args, "max_seasons", None),
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    from citywok.matcher.store.names import TitlesError, load_titles

    s = _settings(args)
    if not args.paths and not args.remove:
        raise CommandError("name files or folders to ingest, or --remove EPISODE_ID", EXIT_USAGE)
    if args.remove and args.format == "pickle":
        raise CommandError("--remove works on LMDB shards only", EXIT_USAGE)
    try:
        titles = load_titles(args.titles) if args.titles else None
    except TitlesError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    code = _remove(args, s) if args.remove else 0
    if args.paths:
        code = max(code, _ingest(args, s, titles))
    return code


def _remove(args: argparse.Namespace, s: settings.Settings) -> int:
    from citywok.matcher.store.ingest import remove_episodes, season_path

    if not (season_path(s.data_dir, s.db_version, args.season) / layout.DATA_FILE).is_file():
        have = catalog.season_list(layout.version_dir(s.data_dir, s.db_version))
        raise CommandError(f"there is no season {args.season} in {s.db_version} to remove from"
                           f" (it holds {have or 'no seasons'})", EXIT_USAGE)
    removed = remove_episodes(args.remove, args.season, s.data_dir, s.db_version)
    for eid, was in removed.items():
        print(f"{eid}: removed" if was else f"{eid}: not in season {args.season}, nothing removed")
    return 0 if all(removed.values()) else EXIT_FAILED


def _ingest(args: argparse.Namespace, s: settings.Settings, titles: dict[str, str] | None) -> int:
    from citywok.matcher.legacy.ingest import ingest_pickle
    from citywok.matcher.legacy.pickles import LegacyError
    from citywok.matcher.store.ingest import ingest_paths, media_files
    from citywok.matcher.store.shard import ShardError

    try:
        total = len(list(media_files(args.paths)))
    except FileNotFoundError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    started = time.monotonic()
    audio = 0.0
    bar = catalog.progress_bar(total, "ep", args.no_progress)

    def on_result(r) -> None:  # noqa: ANN001
        nonlocal audio
        if r.status in {"added", "replaced"}:
            audio += r.seconds
        elapsed = max(1e-6, time.monotonic() - started)
        bar.set_postfix_str(f"{audio / 3600:.2f} h ingested, {audio / elapsed:.0f}x real time", refresh=False)
        bar.update(1)
        if r.status == "failed":
            bar.write(f"FAILED {r.path}: {r.error}", file=sys.stderr)

    try:
        if args.format == "pickle":
            results = ingest_pickle(args.paths, args.season, s.data_dir, workers=args.workers, on_result=on_result,
                                    titles=titles)
        else:
            results = ingest_paths(args.paths, args.season, s.data_dir, s.db_version, workers=args.workers,
                                   on_result=on_result, titles=titles)
    except (LegacyError, ShardError) as e:
        raise CommandError(str(e)) from None
    finally:
        bar.close()
    counts = {k: sum(r.status == k for r in results) for k in ("added", "replaced", "skipped", "failed")}
    elapsed = time.monotonic() - started
    where = "pickle" if args.format == "pickle" else s.db_version
    print(f"season {args.season:02d} ({where}): " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {audio / 3600:.2f} h of audio in {elapsed:.1f} s")
    return EXIT_FAILED if counts["failed"] else 0


def cmd_identify(args: argparse.Namespace) -> int:
    from citywok.matcher import cli_links
    from citywok.matcher.engine.decode import DecodeError
    from citywok.matcher.engine.identify import ClipTooShort, identify_pcm
    from citywok.matcher.legacy.pickles import LegacyError, open_library
    from citywok.matcher.store.library import Library
    from citywok.matcher.store.shard import ShardError

    s = _settings(args)
    source: str | Path = args.clip if URL_RE.match(args.clip) else Path(args.clip)
    vdir = catalog.served_dir(s, getattr(args, "db_version", None)) if s.use_lmdb else None
    if isinstance(source, Path) and not source.is_file():
        raise CommandError(f"{source}: no such file", EXIT_USAGE)
    t0 = time.perf_counter()
    clip: bytes | Path | str = source
    link = None
    if isinstance(source, str):  # a link: downloaded under the server's checks and limits (cli_links)
        clip, link = cli_links.fetch(source)
    try:
        lib = (Library.open(vdir, max_seasons=s.max_seasons, only=s.seasons) if vdir is not None
               else open_library(s.data_dir, max_seasons=s.max_seasons, only=s.seasons))
        with lib:
            pcm = cli_links.decode_from(clip, lib.params.sample_rate, link.start_seconds if link else 0.0)
            long = cli_links.timeline(lib, pcm)
            result = identify_pcm(lib, pcm) if long is None else None
            searched = (lib.episode_count(), lib.seasons)
    except LegacyError as e:
        raise CommandError(str(e)) from None
    except (DecodeError, ClipTooShort) as e:
        raise CommandError(f"{source}: {e}", EXIT_USAGE) from None
    except ShardError as e:
        raise CommandError(str(e)) from None
    if long is not None or result is None:
        return cli_links.report_timeline(long or {}, link, args.json, t0)
    out = result.to_json()
    out["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    if link is not None:
        out["source"] = link.to_json()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        if link is not None:
            print(cli_links.source_line(link))
        print("\n".join(answer_lines(out, *searched)))
    return 0 if result.match else EXIT_NO_MATCH


def cmd_migrate(args: argparse.Namespace) -> int:
    from citywok.matcher.legacy.migrate import format_migrate, migrate
    from citywok.matcher.legacy.pickles import LegacyError
    from citywok.matcher.store.ingest import write_manifest_at

    s = _settings(args)
    dst = args.dst or layout.version_dir(s.data_dir, s.db_version)
    try:
        reports = migrate(args.src, dst, on_season=lambda r: print(f"season {r.season:02d}: {r.status}",
                                                                   file=sys.stderr, flush=True))
    except LegacyError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    print("\n".join(format_migrate(reports)))
    if any(r.status == "failed" for r in reports):
        print(f"{dst} has no manifest while a season failed: it will not be served", file=sys.stderr)
        return EXIT_FAILED
    write_manifest_at(Path(dst))
    print(f"wrote {Path(dst) / layout.MANIFEST}; serve it with `citywok use {layout.check_version(Path(dst).name)}`"
          + ("" if Path(dst).parent.resolve() == layout.fingerprints_dir(s.data_dir).resolve()
             else f" once it is in {layout.fingerprints_dir(s.data_dir)}"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from citywok.matcher.legacy.migrate import format_validate, validate
    from citywok.matcher.legacy.pickles import LegacyError

    try:
        reports = validate(args.src, args.dst, samples=args.samples, seed=args.seed)
    except LegacyError as e:
        raise CommandError(str(e), EXIT_USAGE) from None
    print("\n".join(format_validate(reports)))
    return 0 if all(r.passed for r in reports) else EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    import multiprocessing.forkserver

    settings.load()  # a bad environment value is one line before any process starts
    # The identify workers are forked from a fork server that preloads the engine: start it first, so
    # that it imports while this process does the same and opens the shards (startup to ready halves).
    multiprocessing.set_forkserver_preload(["citywok.matcher.service.workers"])
    multiprocessing.forkserver.ensure_running()
    from citywok.matcher.service import server

    return server.main(args)


__all__ = ["plural", "register"]
