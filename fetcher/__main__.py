"""`python -m fetcher`: the fetcher's subcommands alone, for a fetcher-only container (and the tests,
which run it as a process they can kill)."""

from __future__ import annotations

import argparse
import sys

from citywok.fetcher import cli

from citywok.command import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citywok", description="Pack, push and fetch fingerprint shards.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    cli.register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
