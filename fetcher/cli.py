"""Subcommands of this part (registered into the `citywok` command): pack, push, fetch."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from citywok.fetcher.archive import DEFAULT_ZSTD_LEVEL, FORMATS

from citywok import layout
from citywok import settings as settings_mod
from citywok.command import Subcommands
from citywok.errors import CommandError
from citywok.layout import LayoutError

log = logging.getLogger("fetcher")


def register(sub: Subcommands) -> None:
    """Add this part's subcommands."""
    p = sub.add_parser("pack", help="season LMDBs of a version -> archives + manifest.json")
    _common(p)
    p.add_argument("--format", choices=sorted(FORMATS), default="zst", help="archive compression (default zst)")
    p.add_argument("--level", type=int, default=DEFAULT_ZSTD_LEVEL, help="zstd level (default %(default)s)")
    p.add_argument("--out", type=Path, help="archive folder (default DATA_DIR/archives/VERSION)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("push", help="upload archives + checksums + manifest of a version to the bucket")
    _common(p)
    _bucket(p)
    p.add_argument("--from", dest="src", type=Path, help="archive folder (default DATA_DIR/archives/VERSION)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("fetch", help="pull, verify, unpack a version and flip `current` (init or sidecar)")
    _common(p)
    _bucket(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="init mode: fetch and exit (the default)")
    mode.add_argument("--watch", action="store_true", help="sidecar mode: follow the desired version")
    p.add_argument("--version-file", type=Path,
                   help="file holding the desired version (a mounted ConfigMap key; default: --db-version)")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between checks in watch mode")
    p.add_argument("--keep", type=int, default=2, help="complete versions to keep on the volume (default 2)")
    p.add_argument("--jobs", type=int, default=4, help="seasons downloaded in parallel (default 4)")
    p.add_argument("--retries", type=int, default=8, help="attempts without progress before giving up")
    p.add_argument("--retry-delay", type=float, default=0.5, help="first backoff in seconds (doubles, jittered)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on this port (watch mode; default: no metrics)")
    p.add_argument("--status-file", type=Path, help="status JSON (default DATA_DIR/fetcher-status.json)")
    p.set_defaults(func=cmd_fetch)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db-version", dest="db_version", metavar="VERSION",
                   help="fingerprint version (default: $DB_VERSION, else v1)")
    # the old spelling, still what the operator passes to pods already running
    p.add_argument("--version", dest="db_version", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help="data folder (default: $DATA_DIR or ./data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: bars on stderr)")


def _bucket(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bucket", help="bucket (default S3_BUCKET)")
    p.add_argument("--prefix", help="key prefix (default S3_PREFIX or fingerprints)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default AWS_ENDPOINT_URL)")
    p.add_argument("--region", help="region (default AWS_REGION; `auto` with a custom endpoint, as R2 wants)")


def _settings(args: argparse.Namespace) -> settings_mod.Settings:
    # The SDK's debug logs carry request headers (the access key id in Authorization): never let them out.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return settings_mod.load().with_overrides(
        data_dir=getattr(args, "data_dir", None),
        db_version=getattr(args, "db_version", None),
        s3_bucket=getattr(args, "bucket", None),
        s3_prefix=getattr(args, "prefix", None),
        aws_endpoint_url=getattr(args, "endpoint_url", None),
        aws_region=getattr(args, "region", None),
    )


def cmd_pack(args: argparse.Namespace) -> int:
    from citywok.fetcher.pack import PackError, pack_version

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


def cmd_push(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from citywok.fetcher.manifest import ManifestError
    from citywok.fetcher.pack import archives_dir
    from citywok.fetcher.push import push_version
    from citywok.fetcher.store import Store, StoreError, short_error

    s = _settings(args)
    try:
        store = Store(s)
        src = args.src or archives_dir(s.data_dir, s.db_version)
        res = push_version(store, src, s.db_version, progress=False if args.no_progress else None)
    except (StoreError, ManifestError, LayoutError) as e:
        raise CommandError(str(e)) from None
    except (ClientError, BotoCoreError) as e:
        raise CommandError(f"object store: {short_error(e)}") from None
    print(
        f"pushed {s.db_version} to {store.describe()}: "
        f"{len(res.sent)} uploaded ({res.bytes_sent / 1e6:.1f} MB), "
        f"{len(res.copied)} copied in the bucket, {len(res.skipped)} unchanged"
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from citywok.fetcher.report import PodAnnotations, Reporters, StatusFile
    from citywok.fetcher.store import RetryPolicy, Store, StoreError
    from citywok.fetcher.sync import Fetcher
    from citywok.fetcher.watch import DesiredVersion, Follower

    s = _settings(args)
    try:
        store = Store(s, RetryPolicy(attempts=args.retries, base=args.retry_delay), pool=max(16, args.jobs * 2))
    except StoreError as e:
        raise CommandError(str(e)) from None
    fetcher = Fetcher(store, s.data_dir, jobs=args.jobs, keep=args.keep, progress=False if args.no_progress else None)
    fixed = args.db_version or s.pin or (None if args.version_file else s.db_version)
    desired = DesiredVersion(args.version_file, fixed)
    try:
        pod = PodAnnotations.from_env()
    except Exception as e:  # no service account or kubeconfig: report locally only
        log.warning("not reporting to the Pod: %s", e)
        pod = None
    reporter = Reporters(StatusFile(args.status_file or s.data_dir / "fetcher-status.json"), pod)
    follower = Follower(fetcher.fetch, desired, s.data_dir, reporter, poll=args.poll)
    if not args.watch:
        status = follower.step()
        if status.error:
            raise CommandError(status.error)
        print(f"serving {status.served} from {layout.fingerprints_dir(s.data_dir)}")
        return 0
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info("following %s from %s", args.version_file or "a fixed version", store.describe())
    follower.run(stop)
    return 0
