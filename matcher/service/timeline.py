"""A video longer than a clip (a compilation, a 10-minute upload) answered as a timeline of stretches.

The media is decoded once, in a worker. Audio no longer than a clip is identified there as before, in
the same job; longer audio comes back as PCM, is cut into overlapping windows, and the windows are
identified in batches spread over the worker pool (one job per batch, each worker fingerprinting its
windows). Consecutive windows that agree, the same episode at offsets advancing with the video, are
merged into one stretch: "0:00-0:42 S03E02 at 12:10; 0:42-1:30 no match; ...".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import numpy as np
from citywok.matcher.engine.decode import decode
from citywok.matcher.engine.identify import MAX_CLIP_SECONDS, identify_pcm
from citywok.matcher.service.workers import DECODE_TIME_LIMIT, IdentifyPool, Timed
from citywok.matcher.store.library import Library

WINDOW_SECONDS = 8.0
HOP_SECONDS = 4.0
MIN_GAP_SECONDS = 1.0  # a no-match stretch shorter than this is a window straddling a cut
TAIL_SECONDS = 0.5  # audio past the last whole window gets a window of its own
AGREE_SECONDS = 1.0  # two windows agree when their implied episode time differs by at most this
DEFAULT_MAX_SECONDS = 600.0


@dataclass(frozen=True)
class WindowAnswer:
    """One window: where it starts in the video and what it matched (episode None: no match)."""

    start: float
    episode_id: str | None = None
    season: int | None = None
    offset: float = 0.0  # where the window starts in the episode
    title: str | None = None
    score: int = 0

    @property
    def shift(self) -> float:
        """Episode time minus video time: constant along one uncut scene."""
        return self.offset - self.start


@dataclass
class Stretch:
    start_seconds: float
    end_seconds: float
    match: bool
    episode_id: str | None = None
    season: int | None = None
    title: str | None = None
    offset_seconds: float | None = None  # where the stretch starts in the episode
    windows: int = 0
    score: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Long:
    """What a worker hands back for audio longer than a clip: its PCM, to be cut into windows."""

    pcm: np.ndarray
    decode_s: float


# -- pure: windows, merging, text ------------------------------------------------------------------


def window_starts(seconds: float, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS) -> list[float]:
    """Starts of overlapping windows covering ``seconds`` of audio; a last one ends at the end."""
    if seconds <= window:
        return [0.0]
    starts = [k * hop for k in range(int((seconds - window) // hop) + 1)]
    if seconds - (starts[-1] + window) > TAIL_SECONDS:
        starts.append(seconds - window)
    return [round(s, 3) for s in starts]


def _agree(a: WindowAnswer, b: WindowAnswer, tol: float) -> bool:
    return (a.episode_id is not None and (a.episode_id, a.season) == (b.episode_id, b.season)
            and abs(a.shift - b.shift) <= tol)


def _runs(answers: list[WindowAnswer], tol: float) -> list[list[WindowAnswer]]:
    """Consecutive windows grouped: one run per agreeing scene, one per window that matched nothing.
    A lone unmatched (or stray) window between two windows that agree is taken into their run."""
    runs: list[list[WindowAnswer]] = []
    i = 0
    while i < len(answers):
        run = [answers[i]]
        j = i + 1
        while j < len(answers) and run[0].episode_id is not None:
            if _agree(run[-1], answers[j], tol):
                run.append(answers[j])
                j += 1
            elif j + 1 < len(answers) and _agree(run[-1], answers[j + 1], tol):
                run += [answers[j], answers[j + 1]]
                j += 2
            else:
                break
        runs.append(run)
        i = j
    return runs


def merge(answers: list[WindowAnswer], total: float, window: float = WINDOW_SECONDS,
          tol: float = AGREE_SECONDS) -> list[Stretch]:
    """Stretches of the video, each with the episode and offset its windows agree on (or no match).

    A scene's stretch spans its windows; a no-match stretch only the time no matched window covers (a
    window straddling a cut matches neither scene); where two stretches overlap, the border is put
    halfway through the overlap, and a stretch's offset is the episode time at its (moved) start."""
    out: list[Stretch] = []
    for run in _runs(sorted(answers, key=lambda a: a.start), tol):
        matched = [a for a in run if a.episode_id is not None]
        first = run[0]
        end = min(total, run[-1].start + window)
        if matched and first.episode_id is not None:
            shift = float(np.median([a.shift for a in matched]))
            out.append(Stretch(first.start, end, True, first.episode_id, first.season, first.title, shift,
                               len(run), max(a.score for a in matched)))
        else:
            out.append(Stretch(first.start, end, False, windows=len(run)))
    out = _clip_unmatched(out)
    for a, b in zip(out, out[1:], strict=False):
        border = (a.end_seconds + b.start_seconds) / 2
        a.end_seconds, b.start_seconds = border, border
    stretches = _join_unmatched(out)
    for s in stretches:
        if s.match and s.offset_seconds is not None:
            s.offset_seconds = round(max(0.0, s.offset_seconds + s.start_seconds), 2)
        s.start_seconds, s.end_seconds = round(s.start_seconds, 2), round(s.end_seconds, 2)
    if stretches:
        stretches[0].start_seconds, stretches[-1].end_seconds = 0.0, round(total, 2)
    return stretches


def _clip_unmatched(out: list[Stretch], least: float = MIN_GAP_SECONDS) -> list[Stretch]:
    """No-match stretches cut back to the time their matched neighbours' windows leave; gone if none."""
    kept = []
    for i, s in enumerate(out):
        if not s.match:
            if i > 0 and out[i - 1].match:
                s.start_seconds = max(s.start_seconds, out[i - 1].end_seconds)
            if i + 1 < len(out) and out[i + 1].match:
                s.end_seconds = min(s.end_seconds, out[i + 1].start_seconds)
            if s.end_seconds - s.start_seconds < least:
                continue
        kept.append(s)
    return kept


def _join_unmatched(stretches: list[Stretch]) -> list[Stretch]:
    out: list[Stretch] = []
    for s in stretches:
        if out and not s.match and not out[-1].match:
            out[-1].end_seconds, out[-1].windows = s.end_seconds, out[-1].windows + s.windows
        else:
            out.append(s)
    return out


def clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def text(stretches: list[Stretch]) -> str:
    """One line: "0:00-0:42 S03E02 at 12:10; 0:42-1:30 no match"."""
    parts = []
    for s in stretches:
        what = f"{s.episode_id} at {clock(s.offset_seconds or 0)}" if s.match else "no match"
        parts.append(f"{clock(s.start_seconds)}-{clock(s.end_seconds)} {what}")
    return "; ".join(parts)


# -- in a worker (or a thread): one decode, then batches of windows ---------------------------------


def decode_job(library: Library, data: bytes, start: float, long_after: float, max_seconds: float) -> Timed | Long:
    """Decode once; a clip is identified here and now, longer audio goes back for its windows."""
    rate = library.params.sample_rate
    t0 = time.perf_counter()
    # a clip's decode has the clip's time limit; a long file a little more, well inside a job's limit
    limit = DECODE_TIME_LIMIT + max(0.0, start + max_seconds - MAX_CLIP_SECONDS) / 60
    pcm = decode(data, rate, max_seconds=start + max_seconds, time_limit=limit)[int(start * rate):]
    t1 = time.perf_counter()
    if pcm.size <= long_after * rate:
        library.check()  # a season whose file shrank is left out before its pages are read
        result = identify_pcm(library, pcm)
        return Timed(result, t1 - t0, time.perf_counter() - t1)
    return Long(pcm, t1 - t0)


def windows_job(library: Library, pcm: np.ndarray, base: float, starts: list[float], window: float
                ) -> list[WindowAnswer]:
    """Identify each window of ``pcm`` (which begins ``base`` seconds into the video)."""
    rate = library.params.sample_rate
    library.check()
    out = []
    for s in starts:
        i = int(round((s - base) * rate))
        r = identify_pcm(library, pcm[i: i + int(window * rate)])
        if r.match and not r.ambiguous and r.episode_id is not None and r.offset_seconds is not None:
            out.append(WindowAnswer(s, r.episode_id, r.season, r.offset_seconds, _title(r), r.score))
        else:
            out.append(WindowAnswer(s))
    return out


def _title(r: object) -> str | None:
    cands = getattr(r, "candidates", None) or []
    return cands[0].title if cands else None


@dataclass
class TimelineResult:
    stretches: list[Stretch]
    seconds: float
    decode_s: float
    match_s: float
    windows: int


async def identify_windows(pool: IdentifyPool, library: Library, long: Long, window: float = WINDOW_SECONDS,
                           hop: float = HOP_SECONDS) -> TimelineResult:
    """The timeline of long audio: window batches over the pool, one job per batch and worker slot."""
    rate = library.params.sample_rate
    seconds = long.pcm.size / rate
    starts = window_starts(seconds, window, hop)
    batches = np.array_split(np.array(starts), max(1, min(len(starts), 2 * pool.slots)))
    t0 = time.perf_counter()
    jobs = []
    for b in (list(map(float, b)) for b in batches if len(b)):
        lo, hi = int(b[0] * rate), int((b[-1] + window) * rate)
        jobs.append(pool.run(library, windows_job, long.pcm[lo:hi], b[0], b, window))
    answers = [a for part in await asyncio.gather(*jobs) for a in part]
    return TimelineResult(merge(answers, seconds, window), seconds, long.decode_s, time.perf_counter() - t0,
                          len(starts))


def timeline_pcm(library: Library, pcm: np.ndarray, window: float = WINDOW_SECONDS, hop: float = HOP_SECONDS
                 ) -> TimelineResult:
    """The timeline of long audio in this process (``citywok identify``): every window here."""
    t0 = time.perf_counter()
    seconds = pcm.size / library.params.sample_rate
    starts = window_starts(seconds, window, hop)
    answers = windows_job(library, pcm, 0.0, starts, window)
    return TimelineResult(merge(answers, seconds, window), seconds, 0.0, time.perf_counter() - t0, len(starts))


def timeline_json(t: TimelineResult, version: str | None) -> dict:
    """The answer for long audio: the stretches, and the longest matched one's episode at the top."""
    matched = [s for s in t.stretches if s.match]
    best = max(matched, key=lambda s: s.end_seconds - s.start_seconds, default=None)
    return {
        "match": best is not None, "episode_id": best.episode_id if best else None,
        "season": best.season if best else None, "title": best.title if best else None,
        "offset_seconds": best.offset_seconds if best else None,
        "confidence": round(sum(s.end_seconds - s.start_seconds for s in matched) / max(t.seconds, 1e-9), 3),
        "clip_seconds": round(t.seconds, 3), "db_version": version, "candidates": [],
        "timeline": [s.to_json() for s in t.stretches], "timeline_text": text(t.stretches), "windows": t.windows,
    }


CLIP_SECONDS = MAX_CLIP_SECONDS  # audio longer than a clip is answered as a timeline
