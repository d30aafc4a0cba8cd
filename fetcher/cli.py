"""Subcommands of this part (registered into the `citywok` command): pack, push, fetch."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from citywok import settings as settings_mod
from citywok.cli import CommandError
from citywok.layout import LayoutError
from fetcher.archive import DEFAULT_ZSTD_LEVEL, FORMATS

log = logging.getLogger("fetcher")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this part's subcommands."""
    p = sub.add_parser("pack", help="season LMDBs of a version -> archives + manifest.json")
    _common(p)
    p.add_argument(
        "--format", choices=sorted(FORMATS), default="zst", help="archive compression (default zst)"
    )
    p.add_argument("--level", type=int, default=DEFAULT_ZSTD_LEVEL, help="zstd level (default %(default)s)")
    p.add_argument("--out", type=Path, help="archive folder (default DATA_DIR/archives/VERSION)")
    p.set_defaults(func=cmd_pack)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", dest="db_version", help="fingerprint version (default DB_VERSION or v1)")
    p.add_argument("--data-dir", type=Path, help="data folder (default DATA_DIR or ./data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    try:
        base = settings_mod.load()
    except ValueError as e:
        raise CommandError(f"bad environment: {e}") from None
    return base.with_overrides(
        data_dir=getattr(args, "data_dir", None),
        db_version=getattr(args, "db_version", None),
        s3_bucket=getattr(args, "bucket", None),
        s3_prefix=getattr(args, "prefix", None),
        aws_endpoint_url=getattr(args, "endpoint_url", None),
        aws_region=getattr(args, "region", None),
    )


def cmd_pack(args: argparse.Namespace) -> int:
    from fetcher.pack import PackError, pack_version

    s = _settings(args)
    try:
        res = pack_version(
            s.data_dir,
            s.db_version,
            fmt=args.format,
            level=args.level,
            out_dir=args.out,
            progress=not args.no_progress,
        )
    except (PackError, LayoutError) as e:
        raise CommandError(str(e)) from None
    ratio = res.archive_bytes / res.lmdb_bytes if res.lmdb_bytes else 0.0
    print(
        f"packed {len(res.manifest['seasons'])} seasons of {s.db_version} into {res.out_dir}: "
        f"{res.lmdb_bytes / 1e6:.1f} MB of LMDB -> {res.archive_bytes / 1e6:.1f} MB of archives ({ratio:.0%})"
    )
    return 0
