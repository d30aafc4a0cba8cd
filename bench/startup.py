"""Startup and size: legacy pickle mode (USE_LMDB=false) against LMDB mode, on the same episodes.

    python -m bench.startup [--seasons 20] [--episodes 6] [--seconds 600] [--runs 5]

Generates seasons of synthetic episodes, fingerprints each episode once, and writes both formats from
those fingerprints: the legacy ``season_NN.pkl`` files and, through ``citywok migrate``, the LMDB
shards (the LMDB size of ``citywok ingest``'s way of writing is shown too). Everything is cached under
``/tmp/citywok-bench-startup`` so reruns only measure. Each measurement runs in a fresh interpreter:
it imports the engine, then times opening the library until it is ready to identify, identifies one
clip, and reports its peak RSS. Figures are medians over ``--runs`` runs, with a warm page cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from citywok.layout import DATA_FILE

CACHE = Path(os.environ.get("CITYWOK_BENCH_CACHE", "/tmp/citywok-bench-startup"))
RATE = 8000  # episodes are synthesised at the fingerprint rate: this benchmark is about storage, not decoding


def episode_seed(season: int, episode: int) -> int:
    return 1000 * season + episode


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS now, VmHWM peak). Not ru_maxrss: Linux carries
    that across exec from the forking parent, so a child would report the benchmark driver's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# -- the measured child ---------------------------------------------------------------------------


def child(mode: str, data: Path, clip: Path) -> None:
    """Runs in a fresh interpreter: imports, then open -> ready -> first answer; prints one JSON line."""
    from citywok.matcher.engine.identify import identify_pcm
    from citywok.matcher.legacy import pickles as legacy
    from citywok.matcher.store.library import Library

    pcm = np.load(clip)
    rss_imported = _status_kb("VmRSS")
    t0 = time.perf_counter()
    lib = legacy.open_library(data / "pickles") if mode == "pickle" else Library.open(data / "lmdb")
    t1 = time.perf_counter()
    peak_ready = _status_kb("VmHWM")
    answer = identify_pcm(lib, pcm)
    t2 = time.perf_counter()
    peak = _status_kb("VmHWM")
    print(json.dumps({
        "ready_ms": (t1 - t0) * 1000, "identify_ms": (t2 - t1) * 1000, "peak_rss_kb": peak,
        "peak_rss_ready_kb": peak_ready,
        "rss_imported_kb": rss_imported, "episode": answer.episode_id, "offset": answer.offset_seconds,
        "score": answer.score, "seasons": len(lib.seasons),
    }))
    lib.close()


# -- building the data ----------------------------------------------------------------------------


def build(seasons: int, episodes: int, seconds: float) -> Path:
    """Fingerprint once, write both formats; cached by the corpus shape and the fingerprint parameters."""
    from citywok.matcher import synth
    from citywok.matcher.engine.fingerprint import fingerprint_pcm
    from citywok.matcher.engine.landmarks import Hashes
    from citywok.matcher.engine.params import DEFAULT_PARAMS
    from citywok.matcher.legacy import pickles as legacy
    from citywok.matcher.legacy.ingest import PickleSeasonWriter
    from citywok.matcher.legacy.migrate import format_migrate, migrate, validate
    from citywok.matcher.store import shared
    from citywok.matcher.store.shard import FORMAT_VERSION, Shard, compact

    # fingerprints depend on the audio and the parameters; the databases also on both formats
    fps = CACHE / f"fingerprints-t{seconds:g}-{DEFAULT_PARAMS.digest()}"
    root = CACHE / (f"s{seasons}-e{episodes}-t{seconds:g}-{DEFAULT_PARAMS.digest()}"
                    f"-shard{FORMAT_VERSION}-pkl{legacy.LEGACY_VERSION}")
    if (root / "done").is_file():
        return root
    fps.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for s in range(1, seasons + 1):
        writer = PickleSeasonWriter(legacy.pickle_path(root / "pickles", s), DEFAULT_PARAMS, s)
        ingest_dir = root / "lmdb-ingest" / f"season_{s:02d}.lmdb"
        shutil.rmtree(ingest_dir, ignore_errors=True)
        with Shard.create(ingest_dir, DEFAULT_PARAMS, s) as shard:
            for e in range(1, episodes + 1):
                eid = f"S{s:02d}E{e:02d}"
                cached = fps / f"{eid}.npz"
                if cached.is_file():
                    z = np.load(cached)
                    hashes = Hashes(z["hash"], z["t"])
                else:
                    hashes = fingerprint_pcm(synth.episode(episode_seed(s, e), seconds, RATE), DEFAULT_PARAMS)
                    np.savez(cached, hash=hashes.hash, t=hashes.t)
                sha = hashlib.sha256(hashes.hash.tobytes()).hexdigest()
                writer.add_episode(eid, hashes, seconds, sha, title=f"Bench.S{s:02d}E{e:02d}")
                shard.add_episode(eid, hashes, seconds, sha, title=f"Bench.S{s:02d}E{e:02d}")
            shared.update(shard)  # as ingest does
        compact(ingest_dir)  # as ingest does
        shared.update(writer)
        writer.close()
        print(f"  season {s:02d}/{seasons} fingerprinted and written ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
    shutil.rmtree(root / "lmdb", ignore_errors=True)
    reports = migrate(root / "pickles", root / "lmdb")
    print("\n".join(format_migrate(reports)), file=sys.stderr)
    failed = [r for r in validate(root / "pickles", root / "lmdb") if not r.passed]
    if failed:
        raise SystemExit(f"validate failed for seasons {[r.season for r in failed]}")
    # the clip: 6 s of the last season's second episode at 0:30, with noise, as the child will see it
    s, e = seasons, min(2, episodes)
    x = synth.episode(episode_seed(s, e), seconds, RATE)[30 * RATE : 36 * RATE]
    np.save(root / "clip.npy", synth.add_noise(x, 10, seed=1))
    (root / "expected.json").write_text(json.dumps({"episode": f"S{s:02d}E{e:02d}", "offset": 30.0}))
    (root / "done").write_text("ok\n")
    return root


# -- measuring and printing -----------------------------------------------------------------------


def measure(mode: str, root: Path) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.startup", "--child", mode, str(root)],
                          capture_output=True, text=True, check=False)
    wall = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_ms"] = wall
    return out


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.iterdir() if f.name == DATA_FILE)


def report(root: Path, seasons: int, runs: int) -> None:
    from citywok.matcher.legacy import pickles as legacy
    from citywok.matcher.store.shard import Shard

    expected = json.loads((root / "expected.json").read_text())
    results: dict[str, list[dict]] = {"pickle": [], "lmdb": []}
    for _ in range(runs):
        for mode in results:  # alternate, so drift on a shared machine hits both modes alike
            results[mode].append(measure(mode, root))
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("ready_ms", "identify_ms", "wall_ms", "peak_rss_kb",
                                                                  "peak_rss_ready_kb", "rss_imported_kb")}
           for m, rs in results.items()}
    print(f"\nstartup: {seasons} seasons, median of {runs} fresh processes per mode (warm page cache); "
          "ready = open until ready to identify; peak RSS = the child's VmHWM")
    print(f"{'mode':<22} {'ready ms':>10} {'min-max':>17} {'1st identify ms':>16} {'process wall ms':>16} "
          f"{'RSS imported MB':>16} {'peak RSS ready MB':>18} {'peak RSS MB':>12}  answer")
    for mode, rs in results.items():
        m = med[mode]
        lo, hi = min(r["ready_ms"] for r in rs), max(r["ready_ms"] for r in rs)
        answers = {(r["episode"], r["offset"], r["score"]) for r in rs}
        label = "pickle (USE_LMDB=false)" if mode == "pickle" else "lmdb"
        print(f"{label:<22} {m['ready_ms']:>10.1f} {f'{lo:.1f}-{hi:.1f}':>17} {m['identify_ms']:>16.1f} "
              f"{m['wall_ms']:>16.0f} {m['rss_imported_kb'] / 1024:>16.1f} {m['peak_rss_ready_kb'] / 1024:>18.1f} "
              f"{m['peak_rss_kb'] / 1024:>12.1f}  {sorted(answers)}")
    for mode, rs in results.items():
        wrong = [r for r in rs if (r["episode"], round(r["offset"])) != (expected["episode"], expected["offset"])]
        if wrong:
            print(f"WARNING: {mode} answered {wrong[0]['episode']} at {wrong[0]['offset']}, expected {expected}")
    speedup = med["pickle"]["ready_ms"] / med["lmdb"]["ready_ms"]

    print("\nsize per season: pickle, LMDB after `citywok migrate`, and LMDB as `citywok ingest` writes it "
          "(add_episode, shared segments, shard.compact)")
    print(f"{'season':>6} {'hashes':>9} {'postings':>9} {'pickle MB':>10} {'lmdb MB':>9} {'smaller':>8} "
          f"{'ingest MB':>10}")
    tot = {"p": 0, "l": 0, "i": 0}
    for n, pkl in legacy.pickle_seasons(root / "pickles").items():
        p, lm = _du(pkl), _du(root / "lmdb" / f"season_{n:02d}.lmdb")
        i = _du(root / "lmdb-ingest" / f"season_{n:02d}.lmdb")
        tot["p"], tot["l"], tot["i"] = tot["p"] + p, tot["l"] + lm, tot["i"] + i
        with Shard.open(root / "lmdb" / f"season_{n:02d}.lmdb") as shard:
            meta = shard.meta()
        print(f"{n:>6} {meta['hash_count']:>9} {meta['posting_count']:>9} {p / 1e6:>10.2f} {lm / 1e6:>9.2f} "
              f"{100 * (1 - lm / p):>7.1f}% {i / 1e6:>10.2f}")
    reduction = 100 * (1 - tot["l"] / tot["p"])
    print(f"{'all':>6} {'':>9} {'':>9} {tot['p'] / 1e6:>10.2f} {tot['l'] / 1e6:>9.2f} {reduction:>7.1f}% "
          f"{tot['i'] / 1e6:>10.2f}")

    print("\ntargets")
    print(f"  LMDB >= 60% smaller than the pickle: {reduction:.1f}% -> {'MET' if reduction >= 60 else 'NOT MET'}")
    print(f"  startup >= 20x faster in LMDB mode:  {speedup:.1f}x -> {'MET' if speedup >= 20 else 'NOT MET'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    ap.add_argument("--seasons", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=6, help="episodes per season")
    ap.add_argument("--seconds", type=float, default=600.0, help="length of each episode")
    ap.add_argument("--runs", type=int, default=5, help="fresh processes per mode")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        root = Path(args.child[1])
        child(args.child[0], root, root / "clip.npy")
        return 0
    print(f"building {args.seasons} seasons x {args.episodes} episodes x {args.seconds:g} s "
          f"(cached in {CACHE})", file=sys.stderr)
    root = build(args.seasons, args.episodes, args.seconds)
    report(root, args.seasons, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
