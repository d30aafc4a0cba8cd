"""`python -m citywok.operator ARGS`: the same as `citywok operator ARGS`, with the operator's command alone."""

from __future__ import annotations

import argparse
import sys

from citywok.operator import cli

from citywok.command import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citywok", description="Run the FingerprintDB operator.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    cli.register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run(parser, ["operator", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
