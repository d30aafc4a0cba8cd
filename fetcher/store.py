"""The object store: any S3-compatible endpoint through boto3 (AWS, Cloudflare R2, MinIO, moto).

    s3://BUCKET/PREFIX/<version>/manifest.json
    s3://BUCKET/PREFIX/<version>/season_01.lmdb.tar.zst (+ .sha256)

Downloads are ranged and resumable: bytes land in a ``.part`` file, and every retry (5xx, throttling,
a dropped connection, a stalled read) asks for ``Range: bytes=<size of .part>-``. The sha256 is computed
while streaming, so a finished download is verified without reading it again. Retries on top of
botocore's own are tenacity's (exponential backoff with full jitter).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import boto3
import urllib3.exceptions
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from citywok.fetcher import metrics
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from citywok.checksum import hash_file
from citywok.errors import CityWokError
from citywok.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MULTIPART = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
THROTTLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "TooManyRequests",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalError",
}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class StoreError(CityWokError):
    """The bucket cannot be reached, or lacks what was asked for."""

    code = "store_failed"


class ChecksumError(StoreError):
    """A downloaded archive is not the one the manifest describes."""

    code = "checksum_mismatch"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``attempts`` failures in a row without progress give up.

    botocore retries each request ``sdk_attempts`` times first (adaptive mode: it also slows itself down
    when the store throttles); this policy then resumes on top, by Range for downloads.
    """

    attempts: int = 8
    base: float = 0.5
    cap: float = 30.0
    sdk_attempts: int = 3

    def delay(self, failure: int) -> float:
        """The pause after the ``failure``-th failure in a row (tenacity's wait_random_exponential)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (failure - 1)))


@dataclass
class _Cursor:
    """Where a ranged download stands: the bytes and hash so far, and its failures in a row without progress."""

    part: Path
    size: int
    sha: Any
    have: int = 0
    started_at: int = 0  # ``have`` when the current attempt began
    failures: int = 0

    def count_failure(self, _state: RetryCallState | None = None) -> None:
        """A failed attempt; one that brought bytes starts the count afresh."""
        self.failures = 1 if self.have > self.started_at else self.failures + 1


def _error(state: RetryCallState) -> BaseException:
    assert state.outcome is not None
    err = state.outcome.exception()
    assert err is not None
    return err


def redact(url: str | None) -> str:
    """An endpoint URL without any user:password part, for messages and logs."""
    if not url:
        return "(AWS default endpoint)"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def is_retryable(exc: BaseException) -> bool:
    """5xx, throttling and dropped or stalled connections are worth another try; 4xx are not."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429 or err.get("Code") in THROTTLE_CODES
    return isinstance(
        exc,
        HTTPClientError
        | BotoConnectionError
        | ResponseStreamingError
        | IncompleteReadError
        | urllib3.exceptions.HTTPError
        | ConnectionError
        | TimeoutError,
    )


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_missing(exc: ClientError) -> bool:
    return _status(exc) == 404 or exc.response.get("Error", {}).get("Code") in MISSING_CODES


class Store:
    """One bucket and prefix; keys are ``PREFIX/<version>/<name>``."""

    def __init__(self, settings: Settings, retry: RetryPolicy | None = None, pool: int = 16) -> None:
        if not settings.s3_bucket:
            raise StoreError("no bucket: set S3_BUCKET or pass --bucket")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self.endpoint = settings.aws_endpoint_url
        self.retry = retry or RetryPolicy()
        region = settings.aws_region or ("auto" if self.endpoint else "us-east-1")
        config = Config(
            region_name=region,
            retries={"mode": "adaptive", "max_attempts": self.retry.sdk_attempts},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=pool,
            # Not every S3-compatible store accepts the newer default checksum headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if self.endpoint else None,
        )
        self.client = boto3.session.Session().client("s3", endpoint_url=self.endpoint, config=config)

    def key(self, version: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, version, name) if p)

    def url(self, version: str, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(version, name)}"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {redact(self.endpoint)}"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """A request with our own retries on top of botocore's (a 5xx burst can outlast botocore's)."""

        def before_sleep(state: RetryCallState) -> None:
            metrics.RETRIES.inc()
            log.warning("%s failed (%s); retry %d in %.1fs", what, short_error(_error(state)),
                        state.attempt_number, state.upcoming_sleep)

        def give_up(state: RetryCallState) -> NoReturn:
            raise StoreError(f"{what}: gave up after {state.attempt_number} attempts ({short_error(_error(state))})")

        return Retrying(retry=retry_if_exception(is_retryable), stop=stop_after_attempt(self.retry.attempts),
                        wait=lambda state: self.retry.delay(state.attempt_number), before_sleep=before_sleep,
                        retry_error_callback=give_up)(fn)

    # -- reading ---------------------------------------------------------------------------------

    def get_manifest(self, version: str) -> dict[str, Any]:
        from citywok.layout import MANIFEST

        url = self.url(version, MANIFEST)
        try:
            body = self._call(
                f"get {url}",
                lambda: self.client.get_object(Bucket=self.bucket, Key=self.key(version, MANIFEST))["Body"].read(),
            )
        except ClientError as e:
            if _is_missing(e) or e.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise StoreError(f"version {version} is not in the bucket: no {url} ({self.describe()})") from None
            raise StoreError(f"cannot read {url}: {short_error(e)}") from None
        except BotoCoreError as e:
            raise StoreError(f"cannot reach {self.describe()}: {short_error(e)}") from None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{url} is not valid JSON: {e}") from None

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self._call(f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as e:
            if _is_missing(e):
                return None
            raise StoreError(f"cannot read s3://{self.bucket}/{key}: {short_error(e)}") from None

    def remote_sha256(self, key: str) -> tuple[str | None, int]:
        """The sha256 recorded on an object at upload (metadata), and its size; (None, 0) if it is absent."""
        h = self.head(key)
        if h is None:
            return None, 0
        return h.get("Metadata", {}).get("sha256"), int(h.get("ContentLength", 0))

    def versions(self) -> list[str]:
        """Version folders under the prefix."""
        out = []
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    out.append(cp["Prefix"][len(prefix) :].strip("/"))
        except (ClientError, BotoCoreError) as e:
            raise StoreError(f"cannot list {self.describe()}: {short_error(e)}") from None
        return out

    def download(
        self,
        version: str,
        name: str,
        dest: Path,
        size: int,
        sha256: str,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Fetch one archive into ``dest``, resuming ``dest.part``; raise ChecksumError unless it is exactly
        ``size`` bytes with this ``sha256``. The part file is deleted when the bytes are wrong."""
        key, url = self.key(version, name), self.url(version, name)
        cur = _resume(dest.with_name(dest.name + ".part"), size, name)
        with open(cur.part, "ab") as out:
            if cur.have < size:
                self._resuming(name, cur)(self._get_range, key, url, name, cur, out, on_bytes)
            # No fsync: the archive is a scratch copy, hashed again before any later use, and deleted once
            # unpacked; forcing it to disk would only compete with the LMDB writes that must be durable.
            out.flush()
        got_sha = cur.sha.hexdigest()
        if cur.have != size or got_sha != sha256:
            _discard(cur.part)
            metrics.VERIFY_FAILURES.inc()
            raise ChecksumError(
                f"{name}: sha256 mismatch: expected {sha256}, got {got_sha} ({cur.have} bytes, {url})")
        os.replace(cur.part, dest)

    def _resuming(self, name: str, cur: _Cursor) -> Retrying:
        """Retries of a ranged download: ``attempts`` failures in a row without a byte of progress give up."""

        def before_sleep(state: RetryCallState) -> None:
            metrics.RETRIES.inc()
            log.warning("%s: %s; resuming in %.1fs", name, short_error(_error(state)), state.upcoming_sleep)

        def give_up(state: RetryCallState) -> NoReturn:
            raise StoreError(f"{name}: gave up after {cur.failures} attempts without progress "
                             f"({short_error(_error(state))})")

        return Retrying(retry=retry_if_exception(is_retryable), after=cur.count_failure,
                        stop=lambda _state: cur.failures >= self.retry.attempts,
                        wait=lambda _state: self.retry.delay(cur.failures), before_sleep=before_sleep,
                        retry_error_callback=give_up)

    def _get_range(self, key: str, url: str, name: str, cur: _Cursor, out: IO[bytes],
                   on_bytes: Callable[[int], None] | None) -> None:
        """One ranged GET from where the part file ends; errors not worth a retry become StoreErrors."""
        cur.started_at = cur.have
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={cur.have}-{cur.size - 1}")["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK):
                    out.write(chunk)
                    cur.sha.update(chunk)
                    cur.have += len(chunk)
                    metrics.BYTES_DOWNLOADED.inc(len(chunk))
                    if on_bytes:
                        on_bytes(len(chunk))
            finally:
                body.close()
        except ClientError as e:
            if _status(e) == 416 or e.response.get("Error", {}).get("Code") == "InvalidRange":
                _discard(cur.part)
                metrics.VERIFY_FAILURES.inc()
                raise ChecksumError(f"{name}: truncated in the bucket: the object ends before byte "
                                    f"{cur.have}, the manifest says {cur.size} bytes ({url})") from None
            if _is_missing(e):
                raise StoreError(f"{name}: missing from the bucket ({url})") from None
            if not is_retryable(e):
                raise StoreError(f"{name}: {short_error(e)} ({url})") from None
            raise
        except (BotoCoreError, urllib3.exceptions.HTTPError, OSError) as e:
            if not is_retryable(e):
                raise StoreError(f"{name}: {short_error(e)} ({url})") from None
            raise
        if cur.have < cur.size:
            raise ResponseStreamingError(error=f"body ended at byte {cur.have} of {cur.size}")

    # -- writing ---------------------------------------------------------------------------------

    def upload(
        self,
        path: Path,
        key: str,
        sha256: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Upload a file (multipart when large), recording its sha256 as object metadata."""
        extra: dict[str, Any] = {"ContentType": content_type}
        if sha256:
            extra["Metadata"] = {"sha256": sha256}
        try:
            self._upload(path, key, extra, on_bytes)
        except S3UploadFailedError as e:
            raise StoreError(f"upload of s3://{self.bucket}/{key} failed: {str(e)[:300]}") from None

    def _upload(self, path: Path, key: str, extra: dict[str, Any], on_bytes: Callable[[int], None] | None) -> None:
        self._call(
            f"upload s3://{self.bucket}/{key}",
            lambda: self.client.upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Config=MULTIPART, Callback=on_bytes
            ),
        )

    def copy(self, src_key: str, key: str) -> None:
        """A server-side copy (no bytes through this machine), keeping the source's metadata."""
        self._call(
            f"copy s3://{self.bucket}/{src_key}",
            lambda: self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, key, Config=MULTIPART),
        )

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call(
            f"put s3://{self.bucket}/{key}",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type),
        )


def _resume(part: Path, size: int, name: str) -> _Cursor:
    """The cursor of a download that may have been cut: the part file's bytes hashed again (one that is
    longer than the archive can only be wrong, and is dropped)."""
    if part.exists() and part.stat().st_size > size:
        part.unlink()
    cur = _Cursor(part, size, hash_file(part) if part.exists() else hashlib.sha256())
    cur.have = part.stat().st_size if part.exists() else 0
    if cur.have:
        log.info("resuming %s at byte %d of %d", name, cur.have, size)
    return cur


def _discard(part: Path) -> None:
    try:
        part.unlink()
    except FileNotFoundError:
        pass


def short_error(exc: BaseException) -> str:
    """One line about an error, without anything that could carry credentials (no headers, no URLs' users)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"HTTP {_status(exc)} {err.get('Code', '')}".strip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
