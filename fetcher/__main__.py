"""`python -m fetcher`: the fetcher's subcommands alone, for a fetcher-only container (and the tests,
which run it as a process they can kill)."""

from __future__ import annotations

import argparse
import logging
import sys

from citywok.cli import CommandError
from fetcher import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citywok", description="Pack, push and fetch fingerprint shards.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    cli.register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"citywok {args.command}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
