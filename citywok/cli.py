"""The one `citywok` command. Each part registers its own subcommands; this module only wires them."""

from __future__ import annotations

import argparse
import logging
import sys

from citywok import __version__


class CommandError(Exception):
    """A failure to report to the user in one line, with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    from citywok.fetcher import cli as fetcher_cli
    from citywok.matcher import cli as matcher_cli
    from citywok.operator import cli as operator_cli

    parser = argparse.ArgumentParser(prog="citywok", description="Identify which episode a clip is from.")
    parser.add_argument("--version", action="version", version=f"citywok {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for part in (matcher_cli, fetcher_cli, operator_cli):
        part.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging, run the chosen subcommand; a CommandError becomes one line and an exit code."""
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
