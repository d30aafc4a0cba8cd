"""What every command keeps to: the documented exit codes, argument types and help, and running a
parsed command so that every failure a person can cause becomes one line and an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Protocol

from citywok.errors import EXIT_FAILED, EXIT_USAGE, CommandError

# The exit codes every command keeps to (shown by `citywok --help` and in the README).
EXIT_OK, EXIT_NO_MATCH, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 3, 70, 130
EXIT_CODES = (
    (EXIT_OK, "success (identify: a match)"),
    (EXIT_FAILED, "the work failed (a file that would not ingest, an episode not there, an unreachable bucket)"),
    (EXIT_USAGE, "bad input: arguments, environment values, a missing or undecodable file, nothing to search"),
    (EXIT_NO_MATCH, "identify: no match"),
    (EXIT_INTERNAL, "internal error (a bug: rerun with -v for the traceback)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


class Subcommands(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as each part's ``register`` uses it (argparse
    keeps the class itself private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def int_in(least: int, most: int | None = None, what: str = "a number") -> Any:
    """An argparse type: a whole number within bounds, refused with a sentence otherwise."""

    def parse(raw: str) -> int:
        try:
            n = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
        if n < least or (most is not None and n > most):
            bounds = f"from {least} to {most}" if most is not None else f"at least {least}"
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, not {n}")
        return n

    parse.__name__ = what  # argparse names the type in its messages
    return parse


def exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<4}{what}" for code, what in EXIT_CODES)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that names every option's default: the ones the help text does not already say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ([], argparse.SUPPRESS)
        if "default" not in text and action.option_strings and not unset:
            text += " (default: %(default)s)"
        return text


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe the user's input or volume, not a bug: reported in one line (exit 2)."""
    from citywok.layout import LayoutError
    from citywok.settings import SettingsError

    return LayoutError, SettingsError


def report(args: argparse.Namespace, message: str, code: int, error: str = "error") -> int:
    """One line on stderr; with --json also ``{"error", "message", "exit_code"}`` on stdout."""
    if getattr(args, "json", False):
        out: dict[str, Any] = {"error": error, "message": message, "exit_code": code}
        print(json.dumps(out), flush=True)
    print(f"citywok {getattr(args, 'command', '')}: {message}".replace("citywok : ", "citywok: "), file=sys.stderr)
    return code


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse, set up logging, run the chosen subcommand; every failure becomes one line and an exit code."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except CommandError as e:
        return report(args, str(e), e.exit_code, e.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _user_errors() as e:
        return report(args, str(e), EXIT_USAGE, "usage")
    except OSError as e:  # the disk or the volume said no: a full disk, a read-only or missing folder
        where = f"{e.filename}: " if e.filename else ""
        return report(args, f"{where}{e.strerror or e}", EXIT_FAILED, "failed")
    except Exception as e:  # noqa: BLE001 - no traceback reaches a user unless asked for with -v
        if args.verbose:
            raise
        return report(args, f"internal error: {type(e).__name__}: {e} (rerun with -v for the traceback)",
                      EXIT_INTERNAL, "internal")


def _closed_pipe() -> int:
    """The reader of our output went away (`citywok identify clip | head -1`): stop quietly, as `cat` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK
