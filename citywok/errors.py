"""One exception base for every part of CityWok: each failure carries the HTTP status it answers with
and a stable code (the ``error`` field of a JSON error), so the service turns any of them into a
response by looking these up, and the command line reports any of them in one line.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_USAGE = 1, 2  # the command line's exit codes for these (citywok.command has them all)


class CityWokError(Exception):
    """A failure CityWok explains: ``status`` (HTTP) and ``error`` (a stable code, for programs) per
    class, overridable per instance."""

    status: int = 500
    error: str = "internal"

    def __init__(self, message: str = "", *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if error is not None:
            self.error = error

    @property
    def message(self) -> str:
        return str(self)


class CommandError(CityWokError):
    """A failure to report to the user in one line, with exit status ``code``."""

    error = "failed"

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message, error="usage" if code == EXIT_USAGE else "failed")
        self.code = code
