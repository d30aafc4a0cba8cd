"""One exception base for every part of CityWok: each failure carries the HTTP status it answers with
and a stable code (the ``error`` field of a JSON error), so the service turns any of them into a
response by looking these up, and the command line reports any of them in one line.

A class that has no meaning for a client keeps status 500: the service answers it as an internal error
(logged, reported, no detail sent), whatever its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

EXIT_FAILED, EXIT_USAGE = 1, 2  # the command line's exit codes for these (citywok.command has them all)

NO_HEADERS: Mapping[str, str] = MappingProxyType({})
RETRY_SOON: Mapping[str, str] = MappingProxyType({"Retry-After": "1"})


class CityWokError(Exception):
    """A failure CityWok explains: ``status`` (HTTP), ``code`` (stable, for programs) and ``headers``
    (e.g. Retry-After) per class, overridable per instance."""

    status: int = 500
    code: str = "internal"
    headers: Mapping[str, str] = NO_HEADERS

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if headers is not None:
            self.headers = headers

    @property
    def message(self) -> str:
        """The sentence a client is sent (a subclass may phrase it for clients)."""
        return str(self)

    @property
    def internal(self) -> bool:
        """A failure of the server, not of the request: no detail goes to the client."""
        return self.status == 500


class CommandError(CityWokError):
    """A failure to report to the user in one line, with exit status ``exit_code``."""

    code = "failed"

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message, code="usage" if exit_code == EXIT_USAGE else "failed")
        self.exit_code = exit_code
