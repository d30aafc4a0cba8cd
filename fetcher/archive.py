"""Season shard archives: reproducible packing and strict unpacking.

An archive holds exactly one folder ``season_NN.lmdb/`` with its ``data.mdb``. Packing the same shard
twice gives the same bytes (fixed tar metadata, zstd and gzip without timestamps), so an unchanged
season keeps its sha256 from version to version and is neither pushed nor fetched again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import lmdb
import zstandard

from citywok.errors import CityWokError
from citywok.layout import DATA_FILE
from citywok.shardfile import ShardFileError, shard_summary

FORMATS = {"zst": ".tar.zst", "gz": ".tar.gz"}
CHUNK = 1 << 20
DEFAULT_ZSTD_LEVEL = 6


class ArchiveError(CityWokError):
    """An archive or shard is damaged, truncated, or not what it claims to be."""

    code = "bad_archive"


@dataclass(frozen=True)
class PackedSeason:
    """One packed archive and what a manifest says about it."""

    path: Path
    bytes: int
    sha256: str
    data_bytes: int  # size of data.mdb inside, i.e. room the unpacked season needs
    source_bytes: int  # size of the LMDB file that was packed (before compaction)


def archive_name(season_dir: str, fmt: str = "zst") -> str:
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown archive format {fmt!r}: use one of {', '.join(FORMATS)}")
    return season_dir + FORMATS[fmt]


def season_dir_of(archive: str) -> str:
    """``season_01.lmdb.tar.zst`` -> ``season_01.lmdb``."""
    for suffix in FORMATS.values():
        if archive.endswith(suffix):
            return archive[: -len(suffix)]
    raise ArchiveError(f"{archive}: not a season archive (expected {' or '.join(FORMATS.values())})")


class _HashingWriter:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _tarinfo(name: str, size: int | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if size is None:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
    else:
        ti.size = size
        ti.mode = 0o644
    return ti


def _write_tar(out: IO[bytes], season_dir: str, data_file: Path) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_tarinfo(season_dir + "/", None))
        with open(data_file, "rb") as f:
            tar.addfile(_tarinfo(f"{season_dir}/{DATA_FILE}", data_file.stat().st_size), f)


def pack_season(src: Path, out_dir: Path, fmt: str = "zst", level: int = DEFAULT_ZSTD_LEVEL) -> PackedSeason:
    """Compact-copy the shard (a consistent snapshot even while it is written) and archive it.

    The archive is written beside its final name and renamed, so a crash never leaves half an archive.
    """
    src = Path(src)
    name = archive_name(src.name, fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    source_bytes = (src / DATA_FILE).stat().st_size if (src / DATA_FILE).is_file() else 0
    try:
        shard_summary(src)  # refuse anything that is not a readable shard before doing work
    except ShardFileError as e:
        raise ArchiveError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix=".pack-", dir=out_dir) as tmp:
        snap = Path(tmp) / src.name
        snap.mkdir()
        env = lmdb.open(str(src), readonly=True, lock=False, max_dbs=4, subdir=True, create=False)
        try:
            env.copy(str(snap), compact=True)
        finally:
            env.close()
        data_bytes = (snap / DATA_FILE).stat().st_size
        part = Path(tmp) / name
        with open(part, "wb") as raw:
            hw = _HashingWriter(raw)
            if fmt == "zst":
                cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
                with cctx.stream_writer(cast(IO[bytes], hw), closefd=False) as z:
                    _write_tar(cast(IO[bytes], z), src.name, snap / DATA_FILE)
            else:
                with gzip.GzipFile(filename="", mode="wb", fileobj=hw, mtime=0, compresslevel=6) as z:
                    _write_tar(cast(IO[bytes], z), src.name, snap / DATA_FILE)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(part, final)
    return PackedSeason(final, hw.size, hw.sha.hexdigest(), data_bytes, source_bytes)


def _member_target(member: tarfile.TarInfo, season_dir: str) -> str | None:
    """The file name (``data.mdb``) a member unpacks to, None to skip it, or ArchiveError if it is foreign."""
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if parts and parts[0] == season_dir:
        parts = parts[1:]
    if not parts and member.isdir():
        return None
    if len(parts) == 1 and parts[0] == "lock.mdb":
        return None  # the seed's archives carry the lock file; readers make their own
    if len(parts) == 1 and parts[0] == DATA_FILE and member.isreg():
        return DATA_FILE
    raise ArchiveError(f"unexpected member {member.name!r} in the archive of {season_dir}")


def _decompressed(f: IO[bytes], archive: str) -> IO[bytes]:
    if archive.endswith(FORMATS["zst"]):
        return zstandard.ZstdDecompressor().stream_reader(f, read_size=CHUNK)
    return cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))


class _TarReader:
    """Reads a tar stream member by member, copying data with ``readinto`` (tarfile's stream mode copies
    every block through Python twice, which halves unpack speed). Headers are parsed by tarfile itself;
    pax and GNU long-name records are honoured for the member name."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buf = bytearray(CHUNK)

    def _read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.stream.read(n - len(out))
            if not chunk:
                raise EOFError(f"unexpected end of data ({len(out)} of {n} bytes)")
            out += chunk
        return bytes(out)

    def members(self) -> Iterator[tarfile.TarInfo]:
        """Yield each member's header; the caller must :meth:`copy` or :meth:`skip` it before the next."""
        long_name: str | None = None
        while True:
            block = self._read(tarfile.BLOCKSIZE)
            if block == tarfile.NUL * tarfile.BLOCKSIZE:
                return
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            if info.type in (
                tarfile.GNUTYPE_LONGNAME,
                tarfile.XHDTYPE,
                tarfile.XGLTYPE,
                tarfile.SOLARIS_XHDTYPE,
            ):
                data = self._read(_padded(info.size))[: info.size]
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                elif info.type != tarfile.XGLTYPE:
                    long_name = _pax_path(data) or long_name
                continue
            if long_name is not None:
                info.name, long_name = long_name, None
            yield info

    def copy(self, info: tarfile.TarInfo, out: IO[bytes]) -> None:
        left = info.size
        view = memoryview(self.buf)
        while left:
            n = self.stream.readinto(view[: min(left, CHUNK)])  # type: ignore[attr-defined]
            if not n:
                raise EOFError(f"unexpected end of data in {info.name} ({info.size - left} of {info.size} bytes)")
            out.write(view[:n])
            left -= n
        self._read(_padded(info.size) - info.size)

    def skip(self, info: tarfile.TarInfo) -> None:
        left = _padded(info.size)
        while left:
            left -= len(self._read(min(left, CHUNK)))


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _pax_path(data: bytes) -> str | None:
    for record in data.split(b"\n"):
        _length, _, kv = record.partition(b" ")
        key, _, value = kv.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
    return None


ROOM_MARGIN = 64 << 20  # bytes left free beside an unpacked season


def _check_room(target: Path, size: int, archive: str) -> None:
    """Refuse a member the volume cannot hold, by its real size in the tar header (a manifest's
    data_bytes is only a claim, and a compressed archive can unpack to any size)."""
    free = shutil.disk_usage(target).free
    if size + ROOM_MARGIN > free:
        raise ArchiveError(f"{archive}: {DATA_FILE} unpacks to {size / 1e6:.1f} MB; the volume has "
                           f"{free / 1e6:.1f} MB free: not enough space")


def unpack_archive(archive: Path, dest_dir: Path, season_dir: str | None = None) -> Path:
    """Unpack ``season_NN.lmdb.tar.*`` into ``dest_dir/season_NN.lmdb/``, accepting only its data file."""
    season_dir = season_dir or season_dir_of(archive.name)
    target = dest_dir / season_dir
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    found = False
    try:
        with open(archive, "rb") as f, _decompressed(f, archive.name) as stream:
            reader = _TarReader(stream)
            for member in reader.members():
                if _member_target(member, season_dir) is None:
                    reader.skip(member)
                    continue
                _check_room(target, member.size, archive.name)
                with open(target / DATA_FILE, "wb") as out:
                    reader.copy(member, out)
                    out.flush()
                    os.fsync(out.fileno())
                found = True
    except (tarfile.TarError, zstandard.ZstdError, EOFError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{archive.name}: damaged or truncated archive ({e})") from None
    if not found:
        raise ArchiveError(f"{archive.name}: no {season_dir}/{DATA_FILE} inside")
    return target
