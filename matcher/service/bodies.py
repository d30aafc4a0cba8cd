"""Reading request bodies safely: every way a body can be malformed is a 400, a slow body a 408.

aiohttp's parsers report bad framing with whatever exception the failing step raises: a multipart
boundary that is missing or wrong is a ValueError or an AssertionError, an unknown charset a
LookupError, an unknown transfer encoding a RuntimeError, JSON nested thousands deep a
RecursionError, over-long part headers an HttpProcessingError. Left alone, each was a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from aiohttp.http_exceptions import HttpProcessingError

from citywok.errors import CityWokError

T = TypeVar("T")

BODY_TIMEOUT = 30.0  # seconds a client may take to send its whole body

MALFORMED = (ValueError, AssertionError, LookupError, RuntimeError, RecursionError, HttpProcessingError,
             UnicodeError, TypeError, IndexError, KeyError)


class BadBody(CityWokError):
    """The body is malformed."""

    status = 400
    code = "bad_request"


class BodyTimeout(BadBody):
    """The body is too slow to arrive: a client trickling its upload holds a slot otherwise."""

    status = 408
    code = "body_timeout"


@contextmanager
def malformed_is_400(what: str) -> Iterator[None]:
    """Turn a parser's failure on ``what`` (e.g. "multipart form") into BadBody(400)."""
    try:
        yield
    except ConnectionResetError:
        raise
    except MALFORMED as e:
        detail = "nested too deep" if isinstance(e, RecursionError) else (str(e) or type(e).__name__)
        raise BadBody(f"the {what} is malformed: {detail[:200]}") from None


async def within(aw: Awaitable[T], seconds: float = BODY_TIMEOUT) -> T:
    """Await reading a body, at most ``seconds``: a client trickling its upload holds a slot otherwise."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {seconds:g} s") from None


def header_bytes(value: str) -> bytes:
    """A header value back to the bytes the client sent (aiohttp decodes with surrogateescape), so a
    non-ASCII token compares as bytes instead of failing to encode."""
    return value.encode("utf-8", "surrogateescape")
