"""The one sha256 of a file: archives (pack, push, fetch) and episode files (ingest) are hashed alike."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def hash_file(path: Path, sha: Any = None, progress: Callable[[int], None] | None = None) -> Any:
    """``sha`` (a new sha256 if None) updated with the bytes of ``path``, read in 1 MiB chunks so a
    large archive never sits in memory; ``progress`` gets each chunk's length."""
    sha = hashlib.sha256() if sha is None else sha
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if progress:
                progress(len(chunk))
    return sha


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The hex sha256 of a file's bytes."""
    return str(hash_file(path, progress=progress).hexdigest())
