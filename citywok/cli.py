"""The one `citywok` command. Each part registers its own subcommands; this module only wires them
and turns every failure a person can cause into one line and a documented exit code."""

from __future__ import annotations

import argparse
import sys

from citywok import __version__
from citywok.command import EXIT_OK, DefaultsFormatter, exit_codes_text, run


def build_parser() -> argparse.ArgumentParser:
    from citywok.fetcher import cli as fetcher_cli
    from citywok.matcher import cli as matcher_cli
    from citywok.operator import cli as operator_cli

    parser = argparse.ArgumentParser(prog="citywok", description="Identify which episode a clip is from.",
                                     epilog=exit_codes_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"citywok {__version__}",
                        help="print the program's version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for part in (matcher_cli, fetcher_cli, operator_cli):
        part.register(sub)
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)")
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete in")
    p.set_defaults(func=lambda args: _completion(parser, args.shell))
    for p in sub.choices.values():
        p.formatter_class = DefaultsFormatter
    return parser


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    import shtab

    print(shtab.complete(parser, shell=shell))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
