"""`citywok episodes`, `versions` and `use`: what the volume holds, and which version is served."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from citywok.matcher.words import clock, plural

from citywok import layout, progress, settings
from citywok.command import Subcommands, int_in
from citywok.errors import EXIT_USAGE, CommandError


def register(sub: Subcommands) -> None:
    p = sub.add_parser("episodes", help="a season's episodes and titles")
    p.add_argument("--season", type=int_in(1, 99, "season"), help="season number (default: every season)")
    p.add_argument("--data-dir", type=Path, help="data folder (default: $DATA_DIR or ./data)")
    p.add_argument("--db-version", metavar="VERSION", help="version to list (default: $DB_VERSION, else `current`)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_episodes)

    p = sub.add_parser("versions", help="the versions on the volume, which one is `current`, what each holds")
    p.add_argument("--data-dir", type=Path, help="data folder (default: $DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("use", help="point `current` at a complete version (what identify and serve answer from)")
    p.add_argument("version", metavar="VERSION", help="a version folder under DATA_DIR/fingerprints")
    p.add_argument("--data-dir", type=Path, help="data folder (default: $DATA_DIR or ./data)")
    p.set_defaults(func=cmd_use)


def progress_bar(total: int, unit: str, disable: bool) -> Any:
    return progress.bar(total=total, unit=unit, disable=disable)


def season_list(vdir: Path) -> str:
    found = list(layout.season_dirs(vdir))
    return ", ".join(str(n) for n in found)


def pinned(flag: str | None) -> str | None:
    """The version a command was told to use (flag, then DB_VERSION), or None to follow `current`."""
    return flag or settings.load().pin


def served_dir(s: settings.Settings, flag: str | None) -> Path:
    """The complete version folder to answer from: the pinned version, else `current`."""
    pin = pinned(flag)
    if pin is not None:
        vdir = layout.version_dir(s.data_dir, pin)
        if not vdir.is_dir():
            raise CommandError(f"there is no version {pin} in {layout.fingerprints_dir(s.data_dir)}"
                               f" (`citywok versions` lists them)", EXIT_USAGE)
        if not layout.is_complete(vdir):
            raise CommandError(f"version {pin} is incomplete (no {layout.MANIFEST}) and is not served", EXIT_USAGE)
        return vdir
    cur = layout.current_dir(s.data_dir)
    if cur is None or not layout.is_complete(cur):
        raise CommandError(f"nothing to search in {s.data_dir}: run `citywok ingest` or `citywok fetch` first",
                           EXIT_USAGE)
    return cur


def describe(data_dir: Path) -> list[dict[str, Any]]:
    """Every version folder on the volume: complete or not, current or not, and what its manifest says."""
    base = layout.fingerprints_dir(data_dir)
    current = layout.current_version(data_dir)
    out = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()) if base.is_dir() else []:
        if not layout.VERSION_RE.match(d.name):
            continue
        row: dict[str, Any] = {"version": d.name, "current": d.name == current, "complete": layout.is_complete(d)}
        if row["complete"]:
            m = layout.load_manifest(d)
            seconds = [s.seconds for s in m.seasons]
            row.update(seasons=sorted(s.season for s in m.seasons),
                       episodes=sum(len(s.episodes) for s in m.seasons),
                       hashes=sum(s.hash_count for s in m.seasons),
                       hours=round(sum(x or 0.0 for x in seconds) / 3600, 2) if None not in seconds else None,
                       created=m.created)
        else:
            row["seasons"] = list(layout.season_dirs(d))
        out.append(row)
    return out


def cmd_versions(args: argparse.Namespace) -> int:
    s = settings.load().with_overrides(data_dir=args.data_dir)
    rows = describe(s.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no versions in {layout.fingerprints_dir(s.data_dir)}: run `citywok ingest` or `citywok fetch`")
        return 0
    for r in rows:
        mark = "*" if r["current"] else " "
        if not r["complete"]:
            print(f"{mark} {r['version']}: incomplete (no {layout.MANIFEST}), never served")
            continue
        hours = f", {r['hours']:.2f} h" if r["hours"] is not None else ""
        seasons = ", ".join(str(n) for n in r["seasons"]) or "none"
        print(f"{mark} {r['version']}: {plural(len(r['seasons']), 'season')} ({seasons}),"
              f" {plural(r['episodes'], 'episode')}{hours}, {plural(r['hashes'], 'hash', 'hashes')}"
              + ("  <- current" if r["current"] else ""))
    return 0


def cmd_use(args: argparse.Namespace) -> int:
    s = settings.load().with_overrides(data_dir=args.data_dir)
    vdir = layout.version_dir(s.data_dir, args.version)
    if not vdir.is_dir():
        have = ", ".join(r["version"] for r in describe(s.data_dir)) or "none"
        raise CommandError(f"there is no version {args.version} (the volume holds: {have})", EXIT_USAGE)
    if not layout.is_complete(vdir):
        raise CommandError(f"refusing to serve {args.version}: it is incomplete (no {layout.MANIFEST})", EXIT_USAGE)
    before = layout.current_version(s.data_dir)
    layout.flip_current(s.data_dir, args.version)
    was = f" (was {before})" if before not in {None, args.version, layout.CURRENT} else ""
    print(f"current -> {args.version}{was}")
    return 0


def cmd_episodes(args: argparse.Namespace) -> int:
    from citywok.matcher.store.shard import Shard, ShardError

    s = settings.load().with_overrides(data_dir=args.data_dir)
    vdir = served_dir(s, args.db_version)
    seasons = layout.season_dirs(vdir)
    if args.season is not None and args.season not in seasons:
        raise CommandError(f"{vdir.name} has no season {args.season} (it holds {season_list(vdir) or 'none'})",
                           EXIT_USAGE)
    rows: list[dict[str, Any]] = []
    for n, path in seasons.items():
        if args.season is not None and n != args.season:
            continue
        try:
            with Shard.open(path) as shard:
                eps = sorted(shard.episodes(), key=lambda e: e.id)
        except ShardError as e:
            raise CommandError(str(e)) from None
        rows += [{"season": n, "episode_id": e.id, "title": e.title if e.title != e.id else None,
                  "seconds": round(e.duration, 3)} for e in eps]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["episode_id"]) for r in rows), default=0)
    for r in rows:
        print(f"{r['episode_id']:<{width}}  {clock(r['seconds']):>8}  {r['title'] or '(no title)'}")
    print(f"{plural(len(rows), 'episode')} in {vdir.name}"
          + (f" season {args.season}" if args.season is not None else ""))
    return 0
