"""Settings: flags first, then environment variables (the seed's names), then defaults.

Every part reads its configuration through :func:`load`, so the names and defaults live in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from citywok.errors import CityWokError


class SettingsError(CityWokError, ValueError):
    """An environment variable holds a value that cannot mean anything; the message names it."""

    code = "bad_setting"


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={value!r} is not true or false")


def _positive(name: str, value: str | None) -> int | None:
    """A whole number of at least 1; None when unset."""
    if value is None or value.strip() == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a whole number") from None
    if n < 1:
        raise SettingsError(f"{name}={value!r}: it must be at least 1 (leave it unset for all)")
    return n


def _ints(name: str, value: str | None) -> tuple[int, ...] | None:
    """A comma-separated list of numbers ("1,3,5"); None when unset."""
    if value is None or value.strip() == "":
        return None
    try:
        return tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a list of season numbers (use e.g. 1,3,5)") from None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    db_version: str = "v1"
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


def load(env: dict[str, str] | None = None) -> Settings:
    """Read the environment (``os.environ`` by default) into :class:`Settings`."""
    e = os.environ if env is None else env
    return Settings(
        data_dir=Path(e.get("DATA_DIR") or "./data"),
        db_version=e.get("DB_VERSION") or "v1",
        max_seasons=_positive("MAX_SEASONS", e.get("MAX_SEASONS")),
        seasons=_ints("SEASONS", e.get("SEASONS")),
        use_lmdb=_bool("USE_LMDB", e.get("USE_LMDB"), True),
        s3_bucket=e.get("S3_BUCKET") or None,
        s3_prefix=e.get("S3_PREFIX") or "fingerprints",
        aws_endpoint_url=e.get("AWS_ENDPOINT_URL") or None,
        aws_region=e.get("AWS_REGION") or None,
        sentry_dsn=e.get("SENTRY_DSN") or None,
    )


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
