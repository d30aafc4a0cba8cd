"""Settings: flags first, then environment variables (the seed's names), then defaults.

This module is the only reader of the environment: every part takes its configuration from
:func:`load` (the variables all parts share), :func:`serve` (`citywok serve`'s own), :func:`pod` (the
downward API), :func:`operator_image` and :func:`revision`, so the names and defaults live in one place.
A value that cannot mean anything is a :class:`SettingsError` that names the variable and says what it
must be.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from citywok.errors import CityWokError

Env = Mapping[str, str]
REVISION_ENV = "CITYWOK_REVISION"
POSITIVE = 1e-9  # "above 0" for a number of seconds


class SettingsError(CityWokError, ValueError):
    """An environment variable holds a value that cannot mean anything; the message names it."""

    code = "bad_setting"


def _must(name: str, raw: str, what: str) -> SettingsError:
    return SettingsError(f"{name}={raw!r}: it must be {what}")


def _environ(env: Env | None) -> Env:
    return os.environ if env is None else env


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise _must(name, value, "true or false (or 1/0, yes/no, on/off)")


def _number(name: str, value: str | None, kind: Callable[[str], int | float], least: float, default: Any) -> Any:
    """A number of at least ``least`` (POSITIVE: above 0); ``default`` when unset or blank."""
    raw = (value or "").strip()
    if not raw:
        return default
    whole = kind is int
    what = ("a whole number" if whole else "a number") + (
        " above 0" if least == POSITIVE else f", {least:g} or more")
    try:
        v = kind(raw)
    except ValueError:
        raise _must(name, raw, what) from None
    if v < least:
        raise _must(name, raw, what)
    return v


def _ints(name: str, value: str | None) -> tuple[int, ...] | None:
    """A comma-separated list of numbers ("1,3,5"); None when unset."""
    if value is None or value.strip() == "":
        return None
    try:
        return tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise _must(name, value, "a list of season numbers, e.g. 1,3,5") from None


@dataclass(frozen=True)
class Settings:
    """The variables every part shares (the design card's names)."""

    data_dir: Path = Path("./data")
    db_version: str = "v1"  # the version a command writes or reads: DB_VERSION, else v1
    pin: str | None = None  # DB_VERSION as set (None when unset): serve or fetch that version, not `current`
    max_seasons: int | None = None
    seasons: tuple[int, ...] | None = None  # serve only these (SEASONS, set from a FingerprintDB's seasons)
    use_lmdb: bool = True
    s3_bucket: str | None = None
    s3_prefix: str = "fingerprints"
    aws_endpoint_url: str | None = None
    aws_region: str | None = None
    sentry_dsn: str | None = None

    def with_overrides(self, **kwargs: Any) -> Settings:
        """Apply command-line flags; a flag left as None keeps the environment's value."""
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})


def load(env: Env | None = None) -> Settings:
    """Read the environment (``os.environ`` by default) into :class:`Settings`."""
    e = _environ(env)
    return Settings(
        data_dir=Path(e.get("DATA_DIR") or "./data"),
        db_version=e.get("DB_VERSION") or "v1",
        pin=e.get("DB_VERSION") or None,
        max_seasons=_number("MAX_SEASONS", e.get("MAX_SEASONS"), int, 1, None),
        seasons=_ints("SEASONS", e.get("SEASONS")),
        use_lmdb=_bool("USE_LMDB", e.get("USE_LMDB"), True),
        s3_bucket=e.get("S3_BUCKET") or None,
        s3_prefix=e.get("S3_PREFIX") or "fingerprints",
        aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
        aws_region=e.get("AWS_REGION") or None,
        sentry_dsn=e.get("SENTRY_DSN") or None,
    )


@dataclass(frozen=True)
class ServeSettings:
    """`citywok serve`'s own variables: each field's variable is its name in capitals (server.py's
    docstring says what each does). None: the server decides (workers and threads: the CPU budget;
    queue: twice the running jobs)."""

    host: str = "0.0.0.0"
    port: int = 8000
    ingest_token: str | None = None
    url_allow_hosts: str | None = None
    max_upload_bytes: int = 50 << 20
    workers: int | None = None
    max_concurrency: int | None = None
    max_queue: int | None = None
    max_queue_wait: float = 0.5
    max_downloads: int = 8
    poll_interval: float = 0.5
    url_timeout: float = 15.0
    body_timeout: float = 30.0
    timeline_max_seconds: float = 600.0
    link_cache_size: int = 256
    link_cache_ttl: float = 600.0
    shutdown_timeout: float = 30.0


# the numeric serve settings: (whole or not, least value); POSITIVE means above 0
_SERVE_NUMBERS: dict[str, tuple[Callable[[str], int | float], float]] = {
    "port": (int, 0), "max_upload_bytes": (int, 1), "workers": (int, 0), "max_concurrency": (int, 1),
    "max_queue": (int, 0), "max_queue_wait": (float, POSITIVE), "max_downloads": (int, 1),
    "poll_interval": (float, POSITIVE), "url_timeout": (float, POSITIVE), "body_timeout": (float, POSITIVE),
    "timeline_max_seconds": (float, POSITIVE), "link_cache_size": (int, 0), "link_cache_ttl": (float, POSITIVE),
    "shutdown_timeout": (float, POSITIVE),
}


def serve(env: Env | None = None) -> ServeSettings:
    """Read `citywok serve`'s variables (``os.environ`` by default)."""
    e = _environ(env)
    d = ServeSettings()
    values: dict[str, Any] = {}
    for f in fields(ServeSettings):
        name = f.name.upper()
        if f.name in _SERVE_NUMBERS:
            kind, least = _SERVE_NUMBERS[f.name]
            values[f.name] = _number(name, e.get(name), kind, least, getattr(d, f.name))
        else:
            values[f.name] = e.get(name) or getattr(d, f.name)
    return ServeSettings(**values)


@dataclass(frozen=True)
class Pod:
    """Where this process runs in Kubernetes (the downward API's POD_NAME and POD_NAMESPACE), and the
    kubeconfig to reach the API with (KUBECONFIG; None: in-cluster credentials)."""

    name: str | None = None
    namespace: str | None = None
    kubeconfig: str | None = None


def pod(env: Env | None = None) -> Pod:
    e = _environ(env)
    return Pod(e.get("POD_NAME") or None, e.get("POD_NAMESPACE") or None, e.get("KUBECONFIG") or None)


def operator_image(default: str, env: Env | None = None) -> str:
    """The image for pods whose FingerprintDB names none: CITYWOK_IMAGE, else ``default``."""
    return _environ(env).get("CITYWOK_IMAGE") or default


def revision(env: Env | None = None) -> str:
    """The source revision this build came from (CITYWOK_REVISION, set by the image build)."""
    return _environ(env).get(REVISION_ENV, "").strip() or "unknown"


# every variable read here, and the two S3 keys boto3 reads itself: the operator sets no other
NAMES = frozenset({
    "DATA_DIR", "DB_VERSION", "MAX_SEASONS", "SEASONS", "USE_LMDB", "S3_BUCKET", "S3_PREFIX", "AWS_ENDPOINT_URL",
    "AWS_REGION", "SENTRY_DSN", *(f.name.upper() for f in fields(ServeSettings)), "POD_NAME", "POD_NAMESPACE",
    "KUBECONFIG", "CITYWOK_IMAGE", REVISION_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
})


def cpu_quota(cpu_max: str) -> int | None:
    """Whole CPUs a cgroup v2 ``cpu.max`` line allows ("150000 100000" -> 2); None when unlimited."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, -(-quota // period)) if quota > 0 and period > 0 else None


def cpu_budget() -> int:
    """The CPUs this process may use: its affinity, capped by a container's CPU limit (a pod limited to
    one CPU on a 64-core node must not start 64 workers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        quota = cpu_quota(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    return max(1, min(cpus, quota or cpus))
