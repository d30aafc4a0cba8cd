"""Check an LMDB ``data.mdb`` against its own header before anything maps it.

LMDB maps the whole file and trusts it: a page past the end of a truncated file is a SIGBUS that kills
the process (no exception to catch), and a damaged page pointer can reach past the end too. So every
process that opens a shard (matcher, ingest, fetcher) first reads the file with ``pread`` and checks
what the mapping would touch: the two meta pages, the map size and last page of the newest one, and
every page reachable from its B-trees (branch, leaf and overflow pages, named databases included).
The shards hold few keys (the postings are three large values), so the walk reads a few dozen pages.

Format (LMDB 0.9, 64-bit): a page starts with pgno u64, pad u16, flags u16, lower u16, upper u16
(an overflow page's last four bytes are its page count); a meta page then holds magic u32, version u32,
address u64, mapsize u64, two MDB_db records (pad u32 = page size for the first, flags u16, depth u16,
branch, leaf, overflow pages, entries, root: u64 each), last page u64, txn id u64.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from citywok.errors import CityWokError

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
HEADER = 16  # page header bytes
NODE = 8  # node header bytes
INVALID = (1 << 64) - 1  # an empty tree's root
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
MAX_DEPTH = 32
_DB = struct.Struct("<IHHQQQQQ")  # MDB_db: pad, flags, depth, branch, leaf, overflow, entries, root


class LmdbFileError(CityWokError):
    """The file is not a whole, consistent LMDB data file: mapping it could kill the process."""

    code = "bad_lmdb_file"


@dataclass(frozen=True)
class Header:
    page_size: int
    map_size: int
    last_page: int
    txn_id: int
    roots: tuple[int, int]  # free-list and main database roots

    @property
    def needed_bytes(self) -> int:
        """How long the file must be for every page this snapshot names."""
        return (self.last_page + 1) * self.page_size


def _meta(raw: bytes) -> Header | None:
    """One meta page's header, or None when it is not a valid one."""
    if len(raw) < HEADER + 152:
        return None
    flags = struct.unpack_from("<H", raw, 10)[0]
    magic, version, _addr, mapsize = struct.unpack_from("<IIQQ", raw, HEADER)
    if not flags & P_META or magic != MAGIC or version != DATA_VERSION:
        return None
    free, main = _DB.unpack_from(raw, HEADER + 24), _DB.unpack_from(raw, HEADER + 72)
    last, txn = struct.unpack_from("<QQ", raw, HEADER + 120)
    psize = free[0]
    if psize < 512 or psize > 1 << 16 or psize & (psize - 1):
        return None
    return Header(psize, mapsize, last, txn, (free[7], main[7]))


def read_header(fd: int) -> Header:
    """The newest valid meta page of an open data file (as LMDB picks it), its size checked."""
    size = os.fstat(fd).st_size
    first = _meta(os.pread(fd, 4096, 0))
    if first is None:
        raise LmdbFileError(f"no valid LMDB meta page at the start ({size} bytes)")
    second = _meta(os.pread(fd, HEADER + 160, first.page_size))
    metas = [m for m in (first, second) if m is not None and m.page_size == first.page_size]
    head = max(metas, key=lambda m: m.txn_id)
    if head.last_page < 1 or head.last_page >= 1 << 40:
        raise LmdbFileError(f"the meta page names last page {head.last_page}")
    if size < head.needed_bytes:
        raise LmdbFileError(f"the file is {size} bytes; its header needs {head.needed_bytes} "
                            f"({head.last_page + 1} pages of {head.page_size}): truncated")
    if head.map_size and head.map_size < head.needed_bytes:
        raise LmdbFileError(f"the map size {head.map_size} is smaller than the data ({head.needed_bytes} bytes)")
    return head


class _Walker:
    """Reads every page reachable from a snapshot's roots and checks each lies inside the file."""

    def __init__(self, fd: int, head: Header) -> None:
        self.fd, self.head = fd, head
        self.seen: set[int] = set()

    def page(self, pgno: int) -> bytes:
        if not 2 <= pgno <= self.head.last_page:
            raise LmdbFileError(f"a page pointer names page {pgno}, outside pages 2..{self.head.last_page}")
        raw = os.pread(self.fd, self.head.page_size, pgno * self.head.page_size)
        if len(raw) != self.head.page_size or struct.unpack_from("<Q", raw, 0)[0] != pgno:
            raise LmdbFileError(f"page {pgno} does not hold its own number: damaged")
        return raw

    def tree(self, root: int, depth: int = 0) -> None:
        if root == INVALID:
            return
        if depth > MAX_DEPTH or root in self.seen:
            raise LmdbFileError(f"page {root} is reached twice or too deep: damaged tree")
        self.seen.add(root)
        raw = self.page(root)
        flags, lower, upper = struct.unpack_from("<HHH", raw, 10)
        psize = self.head.page_size
        if flags & P_LEAF2 or not flags & (P_BRANCH | P_LEAF) or not HEADER <= lower <= upper <= psize:
            raise LmdbFileError(f"page {root} is not a valid branch or leaf page (flags {flags:#x})")
        for i in range((lower - HEADER) >> 1):
            at = struct.unpack_from("<H", raw, HEADER + 2 * i)[0]
            if not upper <= at <= psize - NODE:
                raise LmdbFileError(f"page {root} has a node outside its bounds")
            lo, hi, nflags, ksize = struct.unpack_from("<HHHH", raw, at)
            if flags & P_BRANCH:
                self.tree(lo | hi << 16 | nflags << 32, depth + 1)
            else:
                self.leaf_node(raw, at + NODE + ksize, lo | hi << 16, nflags, depth, root)

    def leaf_node(self, raw: bytes, at: int, dsize: int, nflags: int, depth: int, pgno: int) -> None:
        inline = 8 if nflags & F_BIGDATA else dsize
        if at + inline > len(raw):
            raise LmdbFileError(f"page {pgno} has a node running past its end")
        if nflags & F_BIGDATA:
            first = struct.unpack_from("<Q", raw, at)[0]
            over = self.page(first)
            pages = struct.unpack_from("<I", over, 12)[0]
            if not struct.unpack_from("<H", over, 10)[0] & P_OVERFLOW or pages * self.head.page_size < dsize:
                raise LmdbFileError(f"overflow page {first} does not hold its {dsize}-byte value")
            if first + pages - 1 > self.head.last_page:
                raise LmdbFileError(f"a {dsize}-byte value runs past the last page")
        elif nflags & F_SUBDATA and not nflags & F_DUPDATA and dsize == _DB.size:
            self.tree(_DB.unpack_from(raw, at)[7], depth + 1)


def check_file(path: Path, walk: bool = True, attempts: int = 3) -> Header:
    """Check ``path`` (a ``data.mdb``) is safe to map; LmdbFileError says why not.

    A writer in another process may commit during the walk and reuse pages the older snapshot named,
    so a walk whose snapshot moved on is tried again.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise LmdbFileError(f"cannot read {path}: {e.strerror}") from None
    try:
        for attempt in range(attempts):
            head = read_header(fd)
            if not walk:
                return head
            try:
                w = _Walker(fd, head)
                for root in head.roots:
                    w.tree(root)
                return head
            except LmdbFileError:
                if read_header(fd).txn_id == head.txn_id or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
    finally:
        os.close(fd)


def still_whole(fd: int) -> str | None:
    """None while an open data file is still as long as its newest header needs, else why not: a cheap
    check (an fstat and two small reads) before each batch of lookups."""
    try:
        read_header(fd)
    except (LmdbFileError, OSError) as e:
        return str(e)
    return None
