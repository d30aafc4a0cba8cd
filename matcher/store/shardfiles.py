"""The season shard's files: the holders' lock, the check that a data file is whole before it is
mapped, and compaction (repacking into full pages beside the live file, then renaming over it).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import lmdb
from citywok.matcher.store.shardtable import ShardError

from citywok.layout import DATA_FILE
from citywok.lmdbfile import LmdbFileError, check_file

MAP_SIZE = 1 << 36  # address space only; the file grows with the data
HOLDERS_LOCK = "holders.lock"


def repack(env: lmdb.Environment, dst: Path) -> None:
    """Copy every named database of ``env`` into a new environment at ``dst``, appending keys in order.

    Appending fills each B-tree page completely, where a shard grown episode by episode leaves its
    pages about two-thirds full (and ``env.copy(compact=True)`` keeps them so): a third less disk.
    """
    dst.mkdir()
    with env.begin() as txn:
        names = [bytes(k) for k, _ in txn.cursor()]
    out = lmdb.open(str(dst), map_size=MAP_SIZE, max_dbs=len(names) + 1, subdir=True)
    try:
        for name in names:
            src_db = env.open_db(name, create=False)
            dst_db = out.open_db(name)
            with env.begin(db=src_db) as rt, out.begin(write=True, db=dst_db) as wt:
                wt.cursor().putmulti(rt.cursor().iternext(), append=True)
        out.sync(True)
    finally:
        out.close()



def compact(path: Path) -> int | None:
    """Rewrite a shard with full pages and no free pages (about half the size after many ingests).

    The repacked file is written beside the live one and renamed over it, so a crash leaves one or
    the other, never half of each. A process that has the shard open keeps its own mapping of the old
    file and would write into it unseen, so compaction runs only under an exclusive lock that no
    holder shares (HOLDERS_LOCK): when anyone else has the season open (a server, another ingest) it
    is skipped and None returned. Otherwise returns the new size in bytes.
    """
    path = Path(path)
    try:
        lock = hold_lock(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    tmp = path / ".compact"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        check_shard_file(path)
        env = lmdb.open(str(path), readonly=True, max_dbs=8, subdir=True, create=False)
        try:
            repack(env, tmp)
        finally:
            env.close()
        os.replace(tmp / DATA_FILE, path / DATA_FILE)
    except lmdb.Error as e:
        raise ShardError(f"{path}: compaction failed ({lmdb_reason(e)}); the shard is as it was") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        release_lock(lock)
    return (path / DATA_FILE).stat().st_size



def hold_lock(path: Path, how: int) -> int:
    """An fd holding an flock on the season's HOLDERS_LOCK (-1 on a read-only volume without one)."""
    try:
        fd = os.open(path / HOLDERS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(path / HOLDERS_LOCK, os.O_RDONLY)
        except OSError:
            return -1
    try:
        fcntl.flock(fd, how)
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_lock(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def lmdb_reason(e: lmdb.Error) -> str:
    """An LMDB error as a sentence: a full disk says so."""
    if isinstance(e, lmdb.MapFullError) or "No space left" in str(e) or "MDB_MAP_FULL" in str(e):
        return "the disk or the map is full; free some space and run it again"
    return str(e)



def check_shard_file(path: Path) -> None:
    """Refuse a data file that mapping could turn into a SIGBUS (truncated, or pointing past its end)."""
    try:
        check_file(path / DATA_FILE)
    except LmdbFileError as e:
        raise ShardError(f"{path}: damaged data.mdb ({e})") from None


def dir_writable(path: Path) -> bool:
    return os.access(path, os.W_OK)
