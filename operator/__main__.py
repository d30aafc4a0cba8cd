"""`python -m citywok_operator`: the same as `citywok operator`, without loading the other parts."""

from __future__ import annotations

import argparse
import sys

from citywok_operator import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citywok")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["operator", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
