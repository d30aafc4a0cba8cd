"""Speech-heavy series benchmark: CityWok through its HTTP server beside audfprint2, on clips as uploaded.

    python -m bench.series [--episodes 24] [--unseen 6] [--clips 50] [--unindexed 1000] [--seconds 3,5]
                           [--seed 7] [--skip-peer] [--scale-hours 10,100,500] [--corpus DIR]

Needs the Debian packages espeak-ng and bible-kjv (bench.series_gen says why) and the music corpus
(bench.engine finds it or builds it with ../shared/corpus/build_corpus.sh). Generates the series
(cached under ~/.cache/citywok/series), cuts the clips (AAC in MP4 with a video track, or MP3; cached),
ingests the indexed episodes into a fresh DATA_DIR, starts `citywok serve` on loopback and POSTs every
clip to /api/v1/identify, one at a time. Server time is the answer's ``elapsed_ms`` (decode included),
client time the request's wall time here. audfprint2 indexes the same files and matches the same clip
files in this process (it decodes with an ffmpeg subprocess: its latency is its own, not a server's).
A row counts an answer right when it names the clip's episode and puts the clip's start within 0.25 s of
where the excerpt starts in the episode's own time. Then the scaling table (bench.series_scale).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from citywok.matcher.store.ingest import ingest_paths

from bench import series_scale
from bench.engine import CACHE, Audfprint, corpus_tracks, cpu_seconds
from bench.series_cut import Clip, clip_folder, cut_clips, row_name, rows
from bench.series_gen import GENERATOR, build_series
from bench.series_http import TOLERANCE, Tally, pct, serve_clips
from citywok.layout import DATA_FILE

UNINDEXED_ROW = "false matches (unindexed clips)"


def row_key(c: Clip) -> str:
    return c.row if c.episode is not None else UNINDEXED_ROW


def peer_clips(peer: Audfprint, clips: list[Clip]) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for c in clips:
        t0 = time.perf_counter()
        ep, off = peer.identify(Path(c.path))
        tallies.setdefault(row_key(c), Tally()).add(c, ep, off, (time.perf_counter() - t0) * 1000)
    return tallies


def index_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.rglob(DATA_FILE))


def _cells(t: Tally | None, unindexed: bool, server: bool) -> list[str]:
    if t is None:
        return ["-"] * (5 if server else 3)
    share = t.answered if unindexed else t.right
    cells = [f"{100 * share / t.total:.1f}%"]
    if server:
        cells += [pct(t.server_ms, 50), pct(t.server_ms, 99)]
    return cells + [pct(t.client_ms, 50), pct(t.client_ms, 99)]


def print_table(order: list[str], ours: dict[str, Tally], peer: dict[str, Tally] | None) -> None:
    head = ["row", "clips", "citywok", "server p50", "p99", "client p50", "p99"]
    if peer is not None:
        head += ["audfprint2", "in-process p50", "p99"]
    lines = [head, ["---"] * len(head)]
    for name in order:
        t = ours.get(name)
        if t is None:
            continue
        unindexed = name == UNINDEXED_ROW
        line = [name, str(t.total), *_cells(t, unindexed, True)]
        if peer is not None:
            line += _cells(peer.get(name), unindexed, False)
        lines.append(line)
    for line in lines:
        print("| " + " | ".join(line) + " |")


def ingest_citywok(files: list[str], data_dir: Path) -> tuple[float, float]:
    """Ingest into season 1 of a fresh DATA_DIR; returns (CPU seconds, wall seconds)."""
    c0, w0 = cpu_seconds(), time.perf_counter()
    results = ingest_paths([Path(f) for f in files], 1, data_dir, "v1")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"ingest failed: {failed[:3]}")
    return cpu_seconds() - c0, time.perf_counter() - w0


def run(args: argparse.Namespace) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    tracks = [p for p, _ in corpus_tracks(Path(args.corpus))]
    episodes, split = build_series(tracks, args.episodes, args.unseen, args.seed)
    indexed = [e for e in episodes if e.indexed]
    hours = sum(e.seconds for e in indexed) / 3600
    print(f"series: {len(indexed)} indexed episodes ({hours:.2f} h), {len(episodes) - len(indexed)} unseen; "
          f"theme {indexed[0].theme_seconds:.0f} s shared by all", flush=True)
    lengths = [float(s) for s in args.seconds.split(",")]
    folder = clip_folder(Path(indexed[0].path).parent, args.episodes, args.unseen, args.clips, args.unindexed,
                         args.seconds)
    clips = cut_clips(episodes, split, lengths, args.clips, args.unindexed, args.seed, folder)
    print(f"{len(clips)} clips ({sum(c.episode is None for c in clips)} unindexed)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="citywok-series-"))
    try:
        data = work / "data"
        cpu, wall = ingest_citywok([e.path for e in indexed], data)
        ours, (rss, pss) = serve_clips(data, clips, row_key)
        ours_bytes = index_bytes(data)
        peer, peer_bytes = None, 0
        if not args.skip_peer:
            p = Audfprint(work)
            p.ingest([Path(e.path) for e in indexed])
            peer = peer_clips(p, clips)
            peer_bytes = p.nbytes()
        print(f"\nload average {os.getloadavg()[0]:.2f} at the end; ms columns: server = the answer's elapsed_ms, "
              f"client = request wall time; right = episode and offset within {TOLERANCE} s\n")
        print_table([row_name(e, s) for e, s in rows(lengths)] + [UNINDEXED_ROW], ours, peer)
        print(f"\nindex per hour of audio: citywok {ours_bytes / hours / 1e6:.2f} MB"
              + ("" if peer is None else f", audfprint2 {peer_bytes / hours / 1e6:.2f} MB"))
        print(f"citywok ingest: {hours * 3600 / cpu:.0f}x real time per core (CPU time), wall {wall:.1f} s; "
              f"server after the rows: RSS {rss / 2**20:.0f} MiB, PSS {pss / 2**20:.0f} MiB")
        if args.scale_hours:
            series_scale.run(data, clips, [float(h) for h in args.scale_hours.split(",")], hours,
                             CACHE / "series" / f"scale-seed{args.seed}-g{GENERATOR}-e{args.episodes}", args.seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.series", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=24, help="indexed episodes (4-6 min each)")
    ap.add_argument("--unseen", type=int, default=6, help="episodes left out of the index, for false matches")
    ap.add_argument("--clips", type=int, default=50, help="clips per row")
    ap.add_argument("--unindexed", type=int, default=1000, help="clips of unseen episodes, every edit in turn")
    ap.add_argument("--seconds", default="3,5", help="excerpt lengths, each a set of rows")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-peer", action="store_true", help="skip audfprint2")
    ap.add_argument("--scale-hours", default="10,100,500", help="hours indexed for the scaling table; '' skips it")
    ap.add_argument("--corpus", default=os.environ.get("CITYWOK_CORPUS", CACHE / "corpus"))
    args = ap.parse_args(argv)
    if args.episodes < 1 or args.clips < 1:
        ap.error("--episodes and --clips must be at least 1")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
