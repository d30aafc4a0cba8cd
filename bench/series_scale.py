"""How identify's cost grows with the catalogue: the series' season plus padding seasons up to H hours.

Padding is made from the series' own postings, so that it has their statistics (how often each hash
occurs, how densely in time) without fingerprinting hundreds of hours: the postings and triplets of the
indexed episodes are read back from their shard, and each copy of the whole set gets its own bijection of
each hash space (h -> h * a + c modulo 2**bits, ``a`` odd), which keeps the popularity of hashes within the
copy and makes copies as unrelated to each other, and to the clips, as other audio would be. Copies are laid
end to end into 22-minute episodes, 20 to a season, written through the real shard writer (and compacted
as `citywok ingest` leaves a season). The seasons are built once into a pool (cached) and each hour count
gets a DATA_DIR whose seasons are hard links into it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.params import DEFAULT_PARAMS
from citywok.matcher.engine.triplets import PAYLOAD_BITS, Triplets
from citywok.matcher.store.ingest import write_manifest
from citywok.matcher.store.shard import FORMAT_VERSION, NewEpisode, Shard, compact

from bench.series_clips import EDITS
from bench.series_cut import Clip, row_name
from bench.series_http import pct, serve_clips
from citywok import layout

PAD_EPISODE_SECONDS = 1320.0
EPISODES_PER_SEASON = 20
SERIES_SEASON = 1


@dataclass(frozen=True)
class Source:
    """One episode's postings (hash, frame) and triplets (hash, value), and its length."""

    hashes: tuple[np.ndarray, np.ndarray]
    triplets: tuple[np.ndarray, np.ndarray]
    seconds: float


def source_episodes(series_dir: Path) -> list[Source]:
    """The postings and triplets of each episode of the series' season, read back from its shard."""
    vdir = layout.version_dir(series_dir, "v1")
    with Shard.open(vdir / layout.season_name(SERIES_SEASON)) as shard:
        h, slot, t = shard.all_postings()
        th, tslot, tv = shard.all_triplets()
        eps = shard.episodes()
    out = []
    for ep in eps:
        mine, tmine = slot == ep.slot, tslot == ep.slot
        out.append(Source((h[mine].astype(np.uint64), t[mine].astype(np.uint64)),
                          (th[tmine].astype(np.uint64), tv[tmine].astype(np.uint64)), ep.duration))
    return out


def pad_episodes(source: list[Source], count: int, seed: int) -> list[NewEpisode]:
    """``count`` padding episodes of PAD_EPISODE_SECONDS: remapped copies of the source, end to end."""
    rng = np.random.default_rng([seed, 500])
    hashes = _Remap([s.hashes[0] for s in source], rng)
    trips = _Remap([s.triplets[0] for s in source], rng)
    frames_per_second = 1 / DEFAULT_PARAMS.frame_seconds
    out: list[NewEpisode] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    seconds, k = 0.0, 0
    while len(out) < count:
        if k % len(source) == 0:  # a new copy of the whole set: new bijections
            hashes.draw()
            trips.draw()
        src = source[k % len(source)]
        k += 1
        cut = np.uint64(int((PAD_EPISODE_SECONDS - seconds) * frames_per_second))  # the last part is cut
        shift = np.uint64(int(seconds * frames_per_second))
        (h, t), (th, tv) = src.hashes, src.triplets
        keep, tkeep = t < cut, (tv >> np.uint64(PAYLOAD_BITS)) < cut
        moved = tv[tkeep] + (shift << np.uint64(PAYLOAD_BITS))
        parts.append((hashes(h[keep]), t[keep] + shift, trips(th[tkeep]), moved))
        seconds = min(PAD_EPISODE_SECONDS, seconds + src.seconds)
        if seconds >= PAD_EPISODE_SECONDS:
            cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
            out.append(NewEpisode("", Hashes(cols[0].astype(np.uint32), cols[1].astype(np.uint32)), seconds, "", None,
                                  Triplets(cols[2].astype(np.uint32), cols[3])))
            parts, seconds = [], 0.0
    return out


class _Remap:
    """h -> h * a + c modulo 2**bits (``a`` odd), a new (a, c) at each ``draw``: a bijection of the hash space."""

    def __init__(self, hashes: list[np.ndarray], rng: np.random.Generator) -> None:
        self.bits = max([int(h.max()) for h in hashes if h.size] + [1]).bit_length()
        self.rng = rng
        self.a = self.c = np.uint64(1)

    def draw(self) -> None:
        self.a = np.uint64(int(self.rng.integers(0, 1 << self.bits)) | 1)
        self.c = np.uint64(int(self.rng.integers(0, 1 << self.bits)))

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return (h * self.a + self.c) & np.uint64((1 << self.bits) - 1)


def padding_plan(hours: float, series_hours: float) -> list[tuple[int, int]]:
    """(season, episodes) of the padding that brings the catalogue to ``hours``; the last season partial."""
    episodes = max(0, int(np.ceil((hours - series_hours) * 3600 / PAD_EPISODE_SECONDS)))
    full, rest = divmod(episodes, EPISODES_PER_SEASON)
    return [(n, EPISODES_PER_SEASON) for n in range(2, full + 2)] + ([(full + 2, rest)] if rest else [])


def _pool_season(pool: Path, n: int, count: int) -> Path:
    return pool / f"s{n:03d}-e{count:02d}"


def build_pool(series_dir: Path, pool: Path, plan: list[tuple[int, int]], seed: int) -> float:
    """The padding seasons of ``plan`` not yet in ``pool``; returns the seconds it took."""
    t0 = time.perf_counter()
    todo = [(n, k) for n, k in plan if not (_pool_season(pool, n, k) / ".done").is_file()]
    source = source_episodes(series_dir) if todo else []
    for n, count in todo:
        eps = pad_episodes(source, count, seed * 1000 + n)
        path = _pool_season(pool, n, count)
        shutil.rmtree(path, ignore_errors=True)
        shard = Shard.create(path, DEFAULT_PARAMS, n)
        try:
            shard.add_episodes([replace(ep, id=f"S{n:02d}E{e + 1:02d}", sha256=f"pad-{seed}-{n}-{e}")
                                for e, ep in enumerate(eps)])
        finally:
            shard.close()
        compact(path)
        (path / ".done").touch()
        print(f"  padding season {n} ({count} episodes) written ({time.perf_counter() - t0:.0f} s)", flush=True)
    return time.perf_counter() - t0


def data_dir_for(series_dir: Path, pool: Path, plan: list[tuple[int, int]], target: Path) -> Path:
    """A DATA_DIR serving the series' season and the padding seasons of ``plan`` (hard links)."""
    shutil.rmtree(target, ignore_errors=True)
    vdir = layout.version_dir(target, "v1")
    src = layout.version_dir(series_dir, "v1") / layout.season_name(SERIES_SEASON)
    for n, path in [(SERIES_SEASON, src)] + [(n, _pool_season(pool, n, k)) for n, k in plan]:
        dst = vdir / layout.season_name(n)
        dst.mkdir(parents=True)
        os.link(path / layout.DATA_FILE, dst / layout.DATA_FILE)
    write_manifest(target, "v1")
    layout.flip_current(target, "v1")
    return target


SCALED_PER_ROW = 10  # clips of each speed, tempo and pitch row the scaling table times


def scaled_clips(clips: list[Clip], seconds: float, per_row: int = SCALED_PER_ROW) -> list[Clip]:
    """The first ``per_row`` indexed clips of ``seconds`` of every row whose edit changes time or pitch."""
    names = {row_name(e, seconds) for e in EDITS if (e.time_scale, e.pitch_scale) != (1.0, 1.0)}
    out: dict[str, list[Clip]] = {}
    for c in clips:
        if c.episode is not None and c.row in names and len(out.setdefault(c.row, [])) < per_row:
            out[c.row].append(c)
    return [c for row in out.values() for c in row]


def run(series_dir: Path, clips: list, hours: list[float], series_hours: float, cache: Path, seed: int = 7) -> None:
    """Print the scaling table for unmodified clips of the longest excerpt length, MP4 and MP3, and for
    that length's speed, tempo and pitch rows (every row's p50, the slowest row's p50 beside it)."""
    longest = max(c.seconds for c in clips)
    chosen = [c for c in clips if c.episode is not None and c.row.startswith("clean") and c.seconds == longest]
    scaled = scaled_clips(clips, longest)
    pool = cache / f"pool-{DEFAULT_PARAMS.digest()}-shard{FORMAT_VERSION}-triplets"
    plans = {h: padding_plan(h, series_hours) for h in hours}
    print(f"\nscaling: unmodified {longest:g} s clips ({len(chosen)}, each sent twice), the series' season plus "
          f"padding seasons of {EPISODES_PER_SEASON} x {PAD_EPISODE_SECONDS / 60:.0f} min", flush=True)
    took = build_pool(series_dir, pool, sorted({p for plan in plans.values() for p in plan}), seed)
    print(f"padding pool: {pool} (built in {took:.0f} s; 0 = cached)")
    print(f"and {len(scaled)} clips of its speed, tempo and pitch rows ({SCALED_PER_ROW} a row, each sent once)")
    lines = [["hours indexed", "seasons", "index MB", "mp4 server p50", "p99", "mp3 server p50", "p99",
              "client p50 (all)", "right", "scaled server p50", "p99", "slowest row p50", "scaled right",
              "RSS MiB", "PSS MiB", "load"]]
    for h in hours:
        data = data_dir_for(series_dir, pool, plans[h], cache / f"data-{int(h)}h")
        vdir = layout.version_dir(data, "v1")
        total_h = series_hours + sum(e["duration"] for e in _episodes(vdir, skip=SERIES_SEASON)) / 3600
        size = sum(f.stat().st_size for f in vdir.rglob(layout.DATA_FILE))
        tallies, (rss, pss) = serve_clips(data, chosen, lambda c: c.container, rounds=2)
        mp4, mp3 = tallies.get("mp4"), tallies.get("mp3")
        every = [x for t in tallies.values() for x in t.client_ms]
        right = sum(t.right for t in tallies.values()) / max(1, sum(t.total for t in tallies.values()))
        edited, _ = serve_clips(data, scaled, lambda c: c.row)
        edited_ms = [x for t in edited.values() for x in t.server_ms]
        slowest = max(edited.items(), key=lambda kv: float(np.median(kv[1].server_ms)))
        edited_right = sum(t.right for t in edited.values()) / max(1, len(scaled))
        lines.append([f"{total_h:.1f}", str(len(plans[h]) + 1), f"{size / 1e6:.0f}",
                      pct(mp4.server_ms, 50) if mp4 else "-", pct(mp4.server_ms, 99) if mp4 else "-",
                      pct(mp3.server_ms, 50) if mp3 else "-", pct(mp3.server_ms, 99) if mp3 else "-",
                      pct(every, 50), f"{100 * right:.1f}%", pct(edited_ms, 50), pct(edited_ms, 99),
                      f"{pct(slowest[1].server_ms, 50)} ({slowest[0]})", f"{100 * edited_right:.1f}%",
                      f"{rss / 2**20:.0f}", f"{pss / 2**20:.0f}",
                      f"{os.getloadavg()[0]:.2f}"])
        print(f"  {total_h:.1f} h measured", flush=True)
    lines.insert(1, ["---"] * len(lines[0]))
    for line in lines:
        print("| " + " | ".join(line) + " |")
    print("server p50/p99 in ms of the answer's elapsed_ms (scaled: the speed, tempo and pitch rows' clips pooled);"
          " RSS sums the server and its workers (shared pages counted in each), PSS counts them once;"
          " load = 1-minute load average after the hour count's run")


def _episodes(vdir: Path, skip: int) -> list[dict]:
    m = layout.read_manifest(vdir)
    out = []
    for key, season in m["seasons"].items():
        if int(key) == skip:
            continue
        with Shard.open(vdir / season["lmdb"]) as shard:
            out += [{"duration": e.duration} for e in shard.episodes()]
    return out
