"""Engine benchmark on real recorded music, CityWok beside the peer audfprint2, same corpus, same clips.

    python -m bench.engine [--clips 100] [--unindexed 500] [--seed 7] [--corpus DIR] [--pad-hours H]

Builds the corpus with ../shared/corpus/build_corpus.sh (cached), treats each track as an episode,
holds some tracks out of the index, cuts random clips under each condition, and prints one table.
``--pad-hours`` adds H hours of synthetic 22-minute episodes (citywok.matcher.synth, 8 kHz WAV, cached) to
both systems' index before the music, so that latency and accuracy are measured against a larger
index (the corpus has 4.8 h); clips still come from the music only, and the ingest row times the
music alone.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from citywok.matcher import synth
from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import identify_pcm
from citywok.matcher.store.ingest import ingest_paths
from citywok.matcher.store.library import Library

from bench.series_clips import combined, scaled
from citywok import layout

RATE = 22050  # clips are cut from the originals at this rate, then written as files both systems read
CACHE = Path(os.environ.get("CITYWOK_CACHE", Path.home() / ".cache" / "citywok"))
NEAR_DUPLICATES = ("cave_old", "airship_remix", "frantic-old")  # build_corpus.sh header: keep one of each pair
HOLD_OUT = 12
CONDITIONS = [
    # name, seconds, kind
    ("clean 3 s", 3, "clean"),
    ("clean 5 s", 5, "clean"),
    ("clean 10 s", 10, "clean"),
    ("mp3 32k 5 s", 5, "mp3"),
    ("opus 16k 5 s", 5, "opus"),
    ("noise 10 dB 5 s", 5, "snr10"),
    ("noise 5 dB 5 s", 5, "snr5"),
    ("noise 0 dB 5 s", 5, "snr0"),
    ("speed +3% 5 s", 5, "speed1.03"),
    ("speed -3% 5 s", 5, "speed0.97"),
    # FFmpeg's filters (bench.series_clips): speed = resampled, tempo = pitch kept, pitch = tempo kept
    *((f"speed {f:g} 5 s", 5, f"fspeed{f:g}") for f in (0.8, 0.9, 1.1, 1.25)),
    *((f"tempo {f:g} 5 s", 5, f"tempo{f:g}") for f in (0.8, 1.25)),
    *((f"pitch {n:+d} st 5 s", 5, f"pitch{n:+d}") for n in (-3, -2, 2, 3)),
    # a pitch shift on top of a tempo or speed change: both factors off the speed, tempo and pitch lines
    *((f"tempo {t:g} + pitch {n:+d} st 5 s", 5, f"tempo{t:g}pitch{n:+d}") for t, n in ((1.15, 2), (0.85, -2))),
    ("speed 1.1 + pitch -3 st 5 s", 5, "fspeed1.1pitch-3"),
    ("tempo 1.2 + pitch -3 st 5 s", 5, "tempo1.2pitch-3"),
]
SCALED_KIND = re.compile(r"(fspeed|tempo|pitch)([-+]?[\d.]+)(?:pitch([-+][\d.]+))?")


@dataclass
class Clip:
    path: Path
    track: str | None  # None: from a held-out track
    start: float
    condition: str


def corpus_tracks(corpus: Path) -> list[tuple[Path, float]]:
    if not (corpus / "manifest.tsv").is_file():
        script = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "build_corpus.sh"
        print(f"building the corpus with {script} (downloads Debian packages) ...", flush=True)
        subprocess.run(["bash", str(script), str(corpus)], check=True)
    out = []
    for line in (corpus / "manifest.tsv").read_text().splitlines():
        rel, seconds, _sha = line.split("\t")
        if any(d in rel for d in NEAR_DUPLICATES):
            continue
        out.append((corpus / rel, float(seconds)))
    return out


def make_clips(tracks: list[Path], held_out: list[Path], n: int, unindexed: int, workdir: Path, seed: int
               ) -> list[Clip]:
    """Cut the clips once per (corpus split, n, unindexed, seed) and keep them in the cache: cutting is slow."""
    import json

    index = workdir / "clips.json"
    if index.is_file():
        return [Clip(Path(c["path"]), c["track"], c["start"], c["condition"]) for c in json.loads(index.read_text())]
    workdir.mkdir(parents=True, exist_ok=True)
    clips = _cut_clips(tracks, held_out, n, unindexed, workdir, seed)
    index.write_text(json.dumps([{"path": str(c.path), "track": c.track, "start": c.start,
                                  "condition": c.condition} for c in clips]))
    return clips


def _cut_clips(tracks: list[Path], held_out: list[Path], n: int, unindexed: int, workdir: Path, seed: int
               ) -> list[Clip]:
    rng = np.random.default_rng(seed)
    clips: list[Clip] = []
    cache: dict[Path, np.ndarray] = {}

    def audio(p: Path) -> np.ndarray:
        if p not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[p] = decode(p, RATE)
        return cache[p]

    plan = [(c, t) for c in CONDITIONS for t in rng.choice(len(tracks), n)]
    plan += [(("unindexed 5 s", 5, "clean"), int(t)) for t in rng.choice(len(held_out), unindexed)]
    plan.sort(key=lambda ct: ct[1])
    for i, ((name, secs, kind), t) in enumerate(plan):
        src = held_out[t] if name.startswith("unindexed") else tracks[t]
        x = audio(src)
        start = float(rng.uniform(0, max(0.0, x.size / RATE - secs - 1)))
        seg = x[int(start * RATE) : int((start + secs) * RATE)]
        fmt, bitrate = "wav", None
        if kind.startswith("snr"):
            seg = synth.add_noise(seg, float(kind[3:]), seed=i)
        elif kind.startswith("speed"):
            seg = synth.change_speed(seg, float(kind[5:]))
        elif kind.startswith(("fspeed", "tempo", "pitch")):
            seg = _scaled_clip(seg, kind)
        elif kind == "mp3":
            fmt, bitrate = "mp3", 32000
        elif kind == "opus":
            fmt, bitrate = "opus", 16000
        path = workdir / f"clip{i:05d}.{fmt}"
        path.write_bytes(synth.encode(seg, RATE, fmt, bitrate))
        clips.append(Clip(path, None if name.startswith("unindexed") else src.stem, start, name))
    return clips


def _scaled_clip(seg: np.ndarray, kind: str) -> np.ndarray:
    """A clip edited by FFmpeg's filters as ``kind`` says: "fspeed1.1", "tempo0.8", "pitch+3" (semitones), or
    a tempo or speed change with a pitch shift on top, "tempo1.15pitch+2"."""
    m = SCALED_KIND.fullmatch(kind)
    if m is None:
        raise ValueError(f"not a scaled condition: {kind}")
    edit, factor = m.group(1).lstrip("f"), float(m.group(2))
    if m.group(3) is None:
        return scaled(seg, RATE, edit, factor)
    shift = 2 ** (float(m.group(3)) / 12)
    return combined(seg, RATE, factor, shift * factor if edit == "speed" else shift)


SAME_AUDIO = 0.9  # normalised cross-correlation of the waveforms


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    """The best normalised cross-correlation of ``x`` with the stretches of ``y`` as long as it."""
    n = x.size
    size = 1 << int(np.ceil(np.log2(y.size + n)))
    c = np.fft.irfft(np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size), size)[: y.size - n + 1]
    energy = np.sqrt(np.convolve(y * y, np.ones(n), "valid")) * np.linalg.norm(x)
    return float((c / np.maximum(energy, 1e-12)).max())


@functools.lru_cache(maxsize=4)
def _track_pcm(track: Path) -> np.ndarray:
    """A track at 8 kHz, decoded once for all the misses judged on it."""
    return decode(track, 8000).astype(np.float64)


def same_audio(track: Path, clip: Clip, offset: float, seconds: float) -> bool:
    """True when the track holds the clip's audio at ``offset`` too (a loop, a repeated section), so
    that the cut point is one of several right answers: the original waveform at the cut point and
    the one at ``offset`` (within 0.1 s, the accuracy rows' tolerance) correlate at ``SAME_AUDIO`` or
    more. Judged on the original audio, by a measure that owes nothing to either system's fingerprints."""
    x = _track_pcm(track)
    cut = x[int(clip.start * 8000) : int((clip.start + seconds) * 8000)]
    lo = max(0, int((offset - 0.1) * 8000))
    there = x[lo : lo + cut.size + 1600]
    return cut.size > 0 and there.size >= cut.size and _ncc(cut, there) >= SAME_AUDIO


def cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


PAD_SECONDS = 1320.0


def pad_episodes(hours: float) -> list[Path]:
    """Synthetic 22-minute episodes as 8 kHz 16-bit WAV files, cached; as many as ``hours`` needs."""
    n = int(np.ceil(hours * 3600 / PAD_SECONDS))
    folder = CACHE / "bench-padding"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        path = folder / f"pad_{k:03d}.wav"
        if not path.is_file():
            pcm = synth.episode(50_000 + k, PAD_SECONDS, 8000)
            tmp = path.with_suffix(".tmp")
            with wave.open(str(tmp), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
            tmp.rename(path)
        files.append(path)
    return files


class CityWok:
    name = "citywok"

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "citywok-data"

    def ingest(self, files: list[Path]) -> None:
        if hasattr(self, "lib"):
            self.lib.close()  # LMDB allows one handle per process, and ingest opens the shard to write
        ingest_paths(files, 1, self.data, "bench")
        self.lib = Library.open(layout.version_dir(self.data, "bench"))
        # stems are the episode ids (no SxxEyy in these names)

    def identify(self, clip: Path) -> tuple[str | None, float | None]:
        pcm = decode(clip, self.lib.params.sample_rate, max_seconds=30)
        r = identify_pcm(self.lib, pcm)
        return (r.episode_id, r.offset_seconds) if r.match else (None, None)

    def nbytes(self) -> int:
        return self.lib.nbytes()


class Audfprint:
    name = "audfprint2"

    def __init__(self, workdir: Path) -> None:
        from audfprint2.core import analyzer, hash_table, matcher

        self.an = analyzer.Analyzer()
        self.an.n_fft, self.an.n_hop = 512, 256
        self.qan = analyzer.Analyzer()
        self.qan.n_fft, self.qan.n_hop, self.qan.shifts = 512, 256, 4  # its CLI's match default
        self.ht = hash_table.HashTable(hashbits=20, depth=100, maxtime=16384)
        self.m = matcher.Matcher()
        self.workdir = workdir

    def ingest(self, files: list[Path]) -> None:
        for f in files:
            self.an.ingest(self.ht, str(f))

    def identify(self, clip: Path) -> tuple[str | None, float | None]:
        res, _dur, _n = self.m.match_file(self.qan, self.ht, str(clip))
        if len(res) == 0:
            return None, None
        tid, _count, aligntime = int(res[0][0]), res[0][1], int(res[0][2])
        name = Path(str(self.ht.names[tid])).stem
        return name, aligntime * self.qan.n_hop / self.qan.target_sr

    def nbytes(self) -> int:
        path = self.workdir / "audfprint.pklz"
        self.ht.save(str(path))
        return path.stat().st_size


def run(args: argparse.Namespace) -> None:
    corpus = Path(args.corpus)
    tracks = corpus_tracks(corpus)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(tracks))
    held = [tracks[i] for i in order[:HOLD_OUT]]
    indexed = [tracks[i] for i in order[HOLD_OUT:]]
    music_hours = sum(s for _, s in indexed) / 3600
    print(f"corpus: {len(tracks)} tracks; indexed {len(indexed)} ({music_hours:.2f} h), held out {len(held)}")
    padding = pad_episodes(args.pad_hours)
    hours = music_hours + len(padding) * PAD_SECONDS / 3600
    if padding:
        print(f"padding: {len(padding)} synthetic episodes of {PAD_SECONDS:.0f} s indexed first; {hours:.2f} h in all")
    work = Path(tempfile.mkdtemp(prefix="citywok-bench-"))
    try:
        t0 = time.perf_counter()
        plan = hashlib.sha256(repr(CONDITIONS).encode()).hexdigest()[:8]  # new rows: new clips
        clip_dir = CACHE / f"bench-clips-{args.clips}-{args.unindexed}-{len(indexed)}-seed{args.seed}-{plan}"
        clips = make_clips([p for p, _ in indexed], [p for p, _ in held], args.clips, args.unindexed, clip_dir,
                           args.seed)
        seconds = {name: secs for name, secs, _ in CONDITIONS}
        scaled_rows = {name for name, _, kind in CONDITIONS if kind.startswith(("fspeed", "tempo", "pitch"))}
        print(f"{len(clips)} clips cut in {time.perf_counter() - t0:.0f} s", flush=True)
        systems = [CityWok(work)] + ([] if args.no_peer else [Audfprint(work)])
        by_stem = {p.stem: p for p, _ in indexed}
        repeated: dict[str, int] = {}
        other_offset: dict[str, int] = {}
        rows: dict[str, dict[str, str]] = {}
        for sysm in systems:
            if padding:
                sysm.ingest(padding)
            c0, w0 = cpu_seconds(), time.perf_counter()
            sysm.ingest([p for p, _ in indexed])
            cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
            stats: dict[str, list] = {}
            looped: dict[str, list] = {}  # right, or the right track where it holds the same audio
            lat: list[float] = []
            scaled_lat: list[float] = []
            for clip in clips:
                q0 = time.perf_counter()
                ep, off = sysm.identify(clip.path)
                dt = time.perf_counter() - q0
                if clip.condition == "clean 5 s":
                    lat.append(dt * 1000)
                elif clip.condition in scaled_rows:
                    scaled_lat.append(dt * 1000)
                loop = False
                if clip.track is None:
                    ok = ep is not None  # a false match
                else:
                    ok = ep == clip.track and off is not None and abs(off - clip.start) <= 0.1
                    if not ok and ep == clip.track and off is not None:
                        other_offset[sysm.name] = other_offset.get(sysm.name, 0) + 1
                        loop = same_audio(by_stem[ep], clip, off, seconds[clip.condition])
                        repeated[sysm.name] = repeated.get(sysm.name, 0) + loop
                stats.setdefault(clip.condition, []).append(ok)
                looped.setdefault(clip.condition, []).append(ok or loop)
            r: dict[str, str] = {}
            order = [c[0] for c in CONDITIONS]
            for name, oks in sorted(stats.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
                r[name] = f"{100 * sum(oks) / len(oks):.1f}%"
                if not name.startswith("unindexed"):  # the false-match row has no loops
                    r[name] += f" / {100 * sum(looped[name]) / len(oks):.1f}%"
            r["ingest x real time per core (CPU time)"] = f"{music_hours * 3600 / cpu:.0f}x"
            r["ingest wall time"] = f"{wall:.1f} s"
            r["identify p50 (5 s clip, decode incl.)"] = f"{statistics.median(lat):.1f} ms"
            r["identify p99"] = f"{np.percentile(lat, 99):.1f} ms"
            r["identify p50, speed/tempo/pitch rows"] = f"{statistics.median(scaled_lat):.1f} ms"
            r["identify p99, speed/tempo/pitch rows"] = f"{np.percentile(scaled_lat, 99):.1f} ms"
            r["index bytes per hour of audio"] = f"{sysm.nbytes() / hours / 1e6:.2f} MB"
            rows[sysm.name] = r
            print(f"{sysm.name}: done", flush=True)
        names = list(rows[systems[0].name])
        print()
        head = " | ".join(f"{s.name:>15}" for s in systems)
        print(f"| {'row (top-1: episode and offset within 0.1 s)':<44} | {head} |")
        print(f"|{'-' * 46}|" + "|".join("-" * 17 for _ in systems) + "|")
        for n in names:
            label = n if not n.startswith("unindexed") else "false matches, unindexed 5 s"
            print(f"| {label:<44} | " + " | ".join(f"{rows[s.name].get(n, '-'):>15}" for s in systems) + " |")
        print(f"\n{args.clips} clips per row ({args.unindexed} unindexed), clip seed {args.seed};"
              f" indexed {hours:.2f} h; machine: {os.cpu_count()} cores")
        print("accuracy rows: strict / counting right an answer where the track holds the same audio")
        print(f"misses that named the right track at another offset: {other_offset or 'none'}; of them, where the"
              f" track holds the same audio (waveform correlation with the cut point >= {SAME_AUDIO}):"
              f" {repeated or 'none'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100, help="clips per condition")
    ap.add_argument("--unindexed", type=int, default=500, help="clips from tracks left out of the index")
    ap.add_argument("--seed", type=int, default=7, help="seed of the clips' tracks, cut points and noise")
    ap.add_argument("--corpus", default=os.environ.get("CITYWOK_CORPUS", CACHE / "corpus"))
    ap.add_argument("--no-peer", action="store_true", help="skip audfprint2")
    ap.add_argument("--pad-hours", type=float, default=0.0, help="synthetic hours indexed beside the music")
    run(ap.parse_args())


if __name__ == "__main__":
    sys.exit(main())
