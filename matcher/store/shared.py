"""Shared segments: audio that occurs in several episodes (opening theme, credits, recaps, stock music).

Found from the shard itself: a hash whose postings fall in two episodes votes for the time shift
between them; a shift that gathers many votes, over a contiguous run, is a segment the two share.
Pairs are then joined into groups ("the theme, in these 8 episodes, here in each") and stored in
the shard, so identify can say *what* an ambiguous clip is instead of guessing an episode.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

import numpy as np
from citywok.matcher.store.season import SLOT_BITS, SeasonStore, SeasonWriter
from citywok.matcher.store.shard import table_keys

MAX_POSTINGS_PER_HASH = 64  # hashes shared by more places than this are too common to pair


@dataclass(frozen=True)
class Occurrence:
    episode_id: str
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class SharedSegment:
    """One piece of audio and every place it occurs."""

    occurrences: tuple[Occurrence, ...]

    @property
    def seconds(self) -> float:
        return max(o.end - o.start for o in self.occurrences)

    def to_json(self) -> dict:
        return {"occurrences": [asdict(o) for o in self.occurrences]}

    @staticmethod
    def from_json(d: dict) -> SharedSegment:
        return SharedSegment(tuple(Occurrence(**o) for o in d["occurrences"]))

    def label(self) -> str:
        """e.g. "shared by 8 episodes, 0:00-0:30 in each" or "... at 1:10 in S01E02, 3:05 in S01E07"."""
        occ = sorted(self.occurrences, key=lambda o: o.episode_id)
        eps = {o.episode_id for o in occ}
        starts = {round(o.start) for o in occ}
        if len(starts) == 1 and len(eps) == len(occ):
            o = occ[0]
            return f"shared by {len(eps)} episodes, {_clock(o.start)}-{_clock(o.end)} in each"
        where = ", ".join(f"{_clock(o.start)}-{_clock(o.end)} in {o.episode_id}" for o in occ)
        return f"shared by {len(eps)} episodes: {where}"

    def covers(self, episode_id: str, start: float, end: float, slack: float = 1.0) -> bool:
        return any(o.episode_id == episode_id and o.start - slack <= start and end <= o.end + slack
                   for o in self.occurrences)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


def find_shared(shard: SeasonWriter, min_hashes: int = 24, min_seconds: float = 3.0, max_gap_seconds: float = 2.0
                ) -> list[SharedSegment]:
    """Every segment of at least ``min_seconds`` that two or more episodes of the shard share."""
    return _group(find_pairs(shard, min_hashes, min_seconds, max_gap_seconds))


def find_pairs(shard: SeasonWriter, min_hashes: int = 24, min_seconds: float = 3.0, max_gap_seconds: float = 2.0,
               new_slots: Collection[int] | None = None) -> list[tuple[Occurrence, Occurrence]]:
    """Every stretch of audio two episodes share, as a pair of occurrences; with ``new_slots``, only
    pairs with at least one of those episodes (the others' pairs have not changed)."""
    p = shard.params
    h, slot, t = shard.all_postings()
    if h.size == 0:
        return []
    time_bits = max(1, int(t.max()).bit_length())
    key, times = _hash_pairs(h, slot, t, new_slots, time_bits)
    if key.size == 0:
        return []
    # one sort groups the pairs by (episode pair, shift), each group's times in order
    key, ta = _sort_pairs(key, times, time_bits)
    key_start = np.flatnonzero(np.r_[True, key[1:] != key[:-1], True])
    uniq, votes = key[key_start[:-1]], np.diff(key_start)
    same_pair = uniq >> np.uint64(time_bits + 1)  # the episode pair of each (pair, shift)
    gap = int(max_gap_seconds / p.frame_seconds)
    episodes = {e.slot: e.id for e in shard.episodes()}
    pairs: list[tuple[Occurrence, Occurrence]] = []
    for u in np.flatnonzero(votes >= min_hashes // 2):
        # pool the neighbouring shifts (+-1 frame) of the same two episodes: peaks jitter
        lo = u - 1 if u > 0 and same_pair[u - 1] == same_pair[u] else u
        hi = u + 1 if u + 1 < uniq.size and same_pair[u + 1] == same_pair[u] else u
        run_times = ta[key_start[lo] : key_start[hi + 1]].astype(np.int64)
        if hi > lo:
            run_times = np.sort(run_times)
        sa, sb, d = _unpack_pair_key(int(uniq[u]), time_bits)
        for run in np.split(run_times, np.flatnonzero(np.diff(run_times) > gap) + 1):
            if run.size >= min_hashes and (run[-1] - run[0]) * p.frame_seconds >= min_seconds:
                a0, a1 = run[0] * p.frame_seconds, (run[-1] + p.target_dt_max) * p.frame_seconds
                b0, b1 = a0 + d * p.frame_seconds, a1 + d * p.frame_seconds
                pairs.append((Occurrence(episodes[sa], round(a0, 2), round(a1, 2)),
                              Occurrence(episodes[sb], round(b0, 2), round(b1, 2))))
    return pairs


def _hash_pairs(h: np.ndarray, slot: np.ndarray, t: np.ndarray, new_slots: Collection[int] | None,
                time_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of postings of one hash from two episodes (with ``new_slots``, one of them new), as
    (pair key, first posting's time)."""
    keys = table_keys(h, slot, t)
    if np.any(keys[1:] < keys[:-1]):  # a shard's table is sorted already; other writers' may not be
        order = np.argsort(keys)
        h, slot, t = h[order], slot[order], t[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    counts = np.diff(np.r_[starts, h.size])
    ok = (counts >= 2) & (counts <= MAX_POSTINGS_PER_HASH)
    is_new = None
    if new_slots is not None:
        is_new = np.isin(slot, np.fromiter(new_slots, np.int64))
        ok &= np.add.reduceat(is_new.astype(np.int64), starts) > 0  # hashes a new episode holds
    # all pairs (i < j) inside each hash group, built one offset k at a time
    key_parts, time_parts = [], []
    starts, counts = starts[ok], counts[ok]
    for k in range(1, int(counts.max(initial=1))):
        g = counts > k
        i = np.repeat(starts[g], counts[g] - k) + _ranges(counts[g] - k)
        j = i + k
        keep = slot[i] != slot[j]
        if is_new is not None:
            keep &= is_new[i] | is_new[j]
        i, j = i[keep], j[keep]  # within a hash the postings are sorted by slot: slot[i] < slot[j]
        key_parts.append(_pair_keys(slot[i], slot[j], t[j].astype(np.int64) - t[i].astype(np.int64), time_bits))
        time_parts.append(t[i])
    if not key_parts:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint32)
    return np.concatenate(key_parts), np.concatenate(time_parts)


def _pair_keys(slot_a: np.ndarray, slot_b: np.ndarray, shift: np.ndarray, time_bits: int) -> np.ndarray:
    """(slot a, slot b, shift) as sortable uint64 keys: slots of SLOT_BITS, the shift (``|shift| <
    2**time_bits``) offset to be positive in ``time_bits + 1`` bits."""
    return ((slot_a.astype(np.uint64) << np.uint64(SLOT_BITS + time_bits + 1))
            | (slot_b.astype(np.uint64) << np.uint64(time_bits + 1))
            | (shift + (1 << time_bits)).astype(np.uint64))


def _unpack_pair_key(key: int, time_bits: int) -> tuple[int, int, int]:
    """(slot a, slot b, shift) of a :func:`_pair_keys` key."""
    return (key >> (SLOT_BITS + time_bits + 1), (key >> (time_bits + 1)) & ((1 << SLOT_BITS) - 1),
            (key & ((1 << (time_bits + 1)) - 1)) - (1 << time_bits))


def _sort_pairs(key: np.ndarray, t: np.ndarray, time_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs sorted by key, then time (``t < 2**time_bits``; times come back as uint64 or as they
    were). A season's keys and times fit one uint64 together, and sorting those is several times
    cheaper than an argsort of the keys."""
    if int(key.max(initial=0)).bit_length() + time_bits <= 64:
        word = key << np.uint64(time_bits)
        word |= t
        word.sort()
        key = word >> np.uint64(time_bits)
        word &= np.uint64((1 << time_bits) - 1)
        return key, word
    order = np.lexsort((t, key))  # a legacy season's times may need more bits
    return key[order], t[order]


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """[0..n0), [0..n1), ... concatenated."""
    total = int(lengths.sum())
    return np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _group(pairs: list[tuple[Occurrence, Occurrence]]) -> list[SharedSegment]:
    """Join pairwise matches into segments: occurrences that overlap in one episode are one node."""
    nodes: list[Occurrence] = []
    parent: list[int] = []

    def node(o: Occurrence) -> int:
        for k, n in enumerate(nodes):
            if n.episode_id == o.episode_id and min(n.end, o.end) - max(n.start, o.start) > 0.5 * (o.end - o.start):
                nodes[k] = Occurrence(n.episode_id, min(n.start, o.start), max(n.end, o.end))
                return k
        nodes.append(o)
        parent.append(len(parent))
        return len(nodes) - 1

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in pairs:
        ra, rb = find(node(a)), find(node(b))
        parent[ra] = rb
    groups: dict[int, list[Occurrence]] = {}
    for k, n in enumerate(nodes):
        groups.setdefault(find(k), []).append(n)
    return [SharedSegment(tuple(sorted(g, key=lambda o: (o.episode_id, o.start)))) for g in groups.values()]


def update(shard: SeasonWriter, changed: Collection[str] | None = None) -> list[SharedSegment]:
    """Recompute and store a season's shared segments (after ingest, or on demand).

    ``changed``: the episodes added or replaced since the stored segments were found. When none of
    them is in a stored segment and no stored episode was removed, only pairs with one of them are
    looked for and joined to the stored segments: adding an episode to a long season then costs a
    pass over what pairs with it, not over every pair of the season.
    """
    if changed is not None:
        changed = set(changed) | stale(shard)
    segments = None if changed is None or not shard.shared_recorded() else _updated(shard, changed)
    if segments is None:
        segments = find_shared(shard)
    shard.put_shared([s.to_json() for s in segments])
    if hasattr(shard, "put_shared_covers"):
        shard.put_shared_covers({e.id: e.sha256 for e in shard.episodes()})
    return segments


def stale(shard: SeasonWriter) -> set[str]:
    """Episodes the stored segments were not found over (an ingest killed between writing episodes
    and their segments): the next update pairs them too. A shard that never recorded what its
    segments cover is taken as covered."""
    covers = shard.shared_covers() if hasattr(shard, "shared_covers") else None
    if covers is None:
        return set() if shard.shared_recorded() else {e.id for e in shard.episodes()}
    return {e.id for e in shard.episodes() if covers.get(e.id) != e.sha256}


def _updated(shard: SeasonWriter, changed: Collection[str]) -> list[SharedSegment] | None:
    """The stored segments joined with the pairs of the ``changed`` episodes; None when a stored
    episode changed or went: an occurrence spans every pair it was found in, and only a pass over
    the whole season knows what is left of it."""
    stored = load(shard)
    episodes = {e.id: e.slot for e in shard.episodes()}
    in_segments = {o.episode_id for seg in stored for o in seg.occurrences}
    if in_segments & set(changed) or in_segments - set(episodes):
        return None
    kept = [(seg.occurrences[0], o) for seg in stored for o in seg.occurrences[1:]]
    slots = {episodes[e] for e in changed if e in episodes}
    return _group(kept + (find_pairs(shard, new_slots=slots) if slots else []))


def load(shard: SeasonStore | SeasonWriter) -> list[SharedSegment]:
    return [SharedSegment.from_json(d) for d in shard.get_shared()]
