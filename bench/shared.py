"""Shared-segment benchmark: a generated series whose episodes share a theme, credits and a cue.

    python -m bench.shared [--clips 40]

8 episodes open with the same 30 s theme and close with the same 20 s credits; two more reuse a
15 s cue at different places. Clips from the shared audio should be reported as ambiguous with
every episode they occur in; a single episode named for them is a wrong guess. Clips of unique
audio should still be named. CityWok and audfprint2 get the same files.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from citywok.matcher import synth

from bench.engine import Audfprint, CityWok

RATE = 22050
THEME, BODY, CREDITS, CUE = 30, 120, 20, 15


def build_series(folder: Path) -> tuple[list[Path], dict[str, np.ndarray]]:
    theme, credits, cue = (synth.episode(s, d, RATE) for s, d in ((5000, THEME), (5001, CREDITS), (5002, CUE)))
    eps = {f"S01E{k + 1:02d}": np.concatenate([theme, synth.episode(6000 + k, BODY, RATE), credits]) for k in range(8)}
    e9, e10 = synth.episode(7000, 100, RATE), synth.episode(7001, 100, RATE)
    eps["S01E09"] = np.concatenate([e9[: 40 * RATE], cue, e9[40 * RATE :]])
    eps["S01E10"] = np.concatenate([e10[: 70 * RATE], cue, e10[70 * RATE :]])
    files = []
    for eid, x in eps.items():
        p = folder / f"{eid}.wav"
        p.write_bytes(synth.encode(x, RATE, "wav"))
        files.append(p)
    return files, eps


def clips(folder: Path, eps: dict[str, np.ndarray], n: int) -> list[tuple[Path, str, set[str]]]:
    """(file, kind, the episodes it truly occurs in)."""
    rng = np.random.default_rng(3)
    series = [f"S01E{k:02d}" for k in range(1, 9)]
    out = []
    for i in range(n):
        kind = ["theme", "credits", "cue", "unique"][i % 4]
        if kind == "theme":
            eid, start, truth = str(rng.choice(series)), rng.uniform(0, THEME - 5), set(series)
        elif kind == "credits":
            eid, start, truth = str(rng.choice(series)), THEME + BODY + rng.uniform(0, CREDITS - 5), set(series)
        elif kind == "cue":
            eid = str(rng.choice(["S01E09", "S01E10"]))
            start = (40 if eid == "S01E09" else 70) + rng.uniform(0, CUE - 5)
            truth = {"S01E09", "S01E10"}
        else:
            eid, start = str(rng.choice(series)), THEME + rng.uniform(5, BODY - 10)
            truth = {eid}
        x = eps[eid][int(start * RATE) : int((start + 5) * RATE)]
        p = folder / f"clip{i:04d}.wav"
        p.write_bytes(synth.encode(synth.add_noise(x, 10, seed=i), RATE, "wav"))
        out.append((p, kind, truth))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="citywok-shared-"))
    try:
        files, eps = build_series(work)
        cl = clips(work, eps, args.clips)
        cw, peer = CityWok(work), Audfprint(work)
        cw.ingest(files)
        peer.ingest(files)
        rows: dict[str, list[str]] = {}
        for kind in ("shared", "unique"):
            picked = [c for c in cl if (c[1] == "unique") == (kind == "unique")]
            ours = [_ours(cw, c) for c in picked]
            theirs = [_peer(peer, c) for c in picked]
            for label, idx in ((("ambiguity reported, all episodes listed", "ambiguous"),
                                ("wrong single guess", "guess")) if kind == "shared" else
                               (("named correctly", "right"), ("wrong episode or none", "wrong"))):
                rows[f"{kind} clips: {label}"] = [f"{sum(o == idx for o in ours)}/{len(picked)}",
                                                  f"{sum(t == idx for t in theirs)}/{len(picked)}"]
        print(f"| {'5 s clips at 10 dB SNR':<54} | {'citywok':>8} | {'audfprint2':>10} |")
        print(f"|{'-' * 56}|{'-' * 10}|{'-' * 12}|")
        for k, (a, b) in rows.items():
            print(f"| {k:<54} | {a:>8} | {b:>10} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ours(cw: CityWok, clip: tuple[Path, str, set[str]]) -> str:
    from citywok.matcher.engine.decode import decode
    from citywok.matcher.engine.identify import identify_pcm

    path, kind, truth = clip
    r = identify_pcm(cw.lib, decode(path, 8000))
    if kind == "unique":
        return "right" if r.match and not r.ambiguous and r.episode_id in truth else "wrong"
    if r.ambiguous and {c.episode_id for c in r.episodes} == truth:
        return "ambiguous"
    return "guess" if r.match else "none"


def _peer(peer: Audfprint, clip: tuple[Path, str, set[str]]) -> str:
    path, kind, truth = clip
    name, _off = peer.identify(path)
    if kind == "unique":
        return "right" if name in truth else "wrong"
    return "guess" if name is not None else "none"


if __name__ == "__main__":
    main()
