"""Clip -> answer: fingerprint the clip, look it up in every season, vote, decide.

The decision is deliberately conservative: a clip is a match only when its best offset gathers
clearly more aligned hashes than any other episode, and at least ``min_score`` of them counting at
most ``part_cap`` from each half second of the clip (its ``spread``), which chance alignments on
unindexed audio almost never do: on real music, unindexed clips that reached a dozen or more aligned
hashes had them from one or two moments (a chord two pieces share), while a true match, even at 0 dB
SNR, has them spread over the clip.
A clip that finds nothing is retried at small speed changes (sped-up or slowed broadcasts).
Most clips are decided by a first vote of half their hashes (half the lookups); it must clear a
higher bar (``half_min_score``; on 1,100 unindexed music clips its spread peaked at 9), and any doubt sends
every hash to a second vote.

When several episodes explain the clip equally well (an opening theme, credits, a reused cue), the
answer says so: ``ambiguous`` with every episode and the offset in each, and what the shared segment
is, rather than one confident guess. A clip that also holds unique audio has one episode ahead by
at least ``margin`` times the evidence of any other, and that episode is the answer. When the clip's
audio recurs within that episode (a loop, a reprised cue), ``also_at`` names the other places.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from citywok.matcher.engine.catalogue import Catalogue, Postings
from citywok.matcher.engine.fingerprint import fingerprint_pcm
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.match import repeats, spread, vote

from citywok.errors import CityWokError

MIN_CLIP_SECONDS = 1.0
MAX_CLIP_SECONDS = 30.0


class ClipTooShort(CityWokError, ValueError):
    """Not enough audio to fingerprint."""

    status = 422
    code = "too_short"


@dataclass(frozen=True)
class MatchPolicy:
    min_score: int = 12  # the best offset's spread: aligned hashes, at most part_cap per half second
    part_cap: int = 5
    kept: int = 8  # candidates kept (best first), each with its spread counted
    margin: float = 1.5  # the best must beat the best other episode by this factor
    speed_min_score: int = 20  # eight more tries at other speeds are eight more chances of a fluke
    speeds: tuple[float, ...] = (1.03, 0.97, 1.02, 0.98, 1.01, 0.99, 1.04, 0.96)
    candidates: int = 5
    repeat_ratio: float = 0.5  # another offset of the same episode with this share of the best score
    half_min_score: int = 20  # a first vote of half the hashes decides only with more evidence than a match needs


DEFAULT_POLICY = MatchPolicy()


@dataclass
class Candidate:
    episode_id: str
    season: int
    offset_seconds: float
    score: int  # aligned hashes at the offset (+-1 frame)
    title: str | None = None
    spread: int = 0  # the same, counting at most MatchPolicy.part_cap from each half second of the clip


@dataclass(frozen=True)
class Ranked:
    """One pass of lookup and voting: candidates (best first) and what they came from."""

    candidates: list[Candidate]
    query_hashes: int
    looked_up: int
    postings: Postings
    slots: dict[tuple[str, int], int]  # (episode id, season) -> slot in the postings


@dataclass
class Identification:
    match: bool
    episode_id: str | None = None
    title: str | None = None
    season: int | None = None
    offset_seconds: float | None = None
    confidence: float = 0.0
    score: int = 0
    spread: int = 0
    speed: float = 1.0
    query_hashes: int = 0
    hashes_looked_up: int = 0
    clip_seconds: float = 0.0
    db_version: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    ambiguous: bool = False
    episodes: list[Candidate] = field(default_factory=list)  # when ambiguous: every episode it could be
    shared_segment: str | None = None  # when ambiguous: what the shared audio is
    also_at: list[float] = field(default_factory=list)  # the clip's audio recurs at these offsets too

    def to_json(self) -> dict:
        return asdict(self)


def _stretch(pcm: np.ndarray, speed: float) -> np.ndarray:
    """Undo a clip played ``speed`` times too fast: stretch it back to the episode's time base."""
    n = int(pcm.size * speed)
    return np.interp(np.arange(n) / speed, np.arange(pcm.size), pcm).astype(np.float32)


def _rank(library: Catalogue, pcm: np.ndarray, speed: float, policy: MatchPolicy) -> Ranked:
    stretched = _stretch(pcm, speed) if speed != 1.0 else pcm
    return _rank_hashes(library, fingerprint_pcm(stretched, library.params), policy)


def _halves(hashes: Hashes) -> tuple[Hashes, Hashes]:
    """The hashes split about in two by a mix of their bits (not by time or frequency)."""
    pick = ((hashes.hash.astype(np.uint64) * np.uint64(0x9E3779B1)) & np.uint64(0x80000000)) == 0
    return Hashes(hashes.hash[pick], hashes.t[pick]), Hashes(hashes.hash[~pick], hashes.t[~pick])


def _rank_hashes(library: Catalogue, hashes: Hashes, policy: MatchPolicy) -> Ranked:
    return _ranked(library, library.lookup(hashes), len(hashes), policy)


def _ranked(library: Catalogue, postings: Postings, query_hashes: int, policy: MatchPolicy) -> Ranked:
    """The best candidates, with the spread of their evidence counted."""
    p = library.params
    v = vote(postings, top=64)
    found: list[Candidate] = []
    slots: dict[tuple[str, int], int] = {}
    for gslot, off, score in zip(v.slot.tolist(), v.offset.tolist(), v.score.tolist(), strict=True):
        found_at = library.entry(gslot)
        if found_at is not None:
            season, ep = found_at
            found.append(Candidate(ep.id, season, round(off * p.frame_seconds, 3), score, ep.title,
                                   spread(postings, gslot, off, p.bucket_frames, policy.part_cap)))
            slots[(ep.id, season)] = gslot
            if len(found) == policy.kept:
                break
    return Ranked(found, query_hashes, postings.looked_up, postings, slots)


def _runner_up(cands: list[Candidate]) -> int:
    best = cands[0]
    return next((c.score for c in cands[1:] if (c.episode_id, c.season) != (best.episode_id, best.season)), 0)


def _decisive(cands: list[Candidate], policy: MatchPolicy, min_score: int | None = None) -> bool:
    """One episode is ahead of every other by ``margin``: a clip straddling shared and unique audio
    is, once its unique part carries a third of the evidence."""
    floor = policy.min_score if min_score is None else min_score
    return bool(cands) and cands[0].spread >= floor and cands[0].score >= policy.margin * _runner_up(cands)


def _contenders(cands: list[Candidate], policy: MatchPolicy) -> list[Candidate]:
    """Episodes that explain the clip about as well as the best one (best first); each needs more
    evidence than a lone match, so two chance alignments never make an ambiguous "match"."""
    if not cands or cands[0].spread < policy.min_score:
        return []
    floor = cands[0].score / policy.margin
    seen: set[tuple[str, int]] = set()
    out = []
    for c in cands:
        if c.score >= floor and c.spread >= policy.margin * policy.min_score and (c.episode_id, c.season) not in seen:
            seen.add((c.episode_id, c.season))
            out.append(c)
    return out


def _segment_label(library: Catalogue, cands: list[Candidate], seconds: float) -> str:
    best = cands[0]
    label = library.shared_label(best.season, best.episode_id, best.offset_seconds,
                                 best.offset_seconds + seconds, slack=seconds)
    return label or f"shared by {len(cands)} episodes"


def identify_pcm(library: Catalogue, pcm: np.ndarray, policy: MatchPolicy = DEFAULT_POLICY) -> Identification:
    """Identify mono PCM at the library's sample rate."""
    p = library.params
    seconds = pcm.size / p.sample_rate
    if seconds < MIN_CLIP_SECONDS:
        raise ClipTooShort(f"the clip has {seconds:.2f} s of audio; at least {MIN_CLIP_SECONDS:g} s is needed")
    pcm = pcm[: int(MAX_CLIP_SECONDS * p.sample_rate)]
    result = Identification(match=False, clip_seconds=round(seconds, 3), db_version=library.version)
    hashes = fingerprint_pcm(pcm, p)
    # most clips are decided by half of their hashes, at half the cost; any doubt and the other half
    # is looked up too, and all of them vote
    first, rest = _halves(hashes)
    ranked = _rank_hashes(library, first, policy)
    if not _decisive(ranked.candidates, policy, policy.half_min_score):
        ranked = _ranked(library, ranked.postings.joined(library.lookup(rest)), len(hashes), policy)
    cands = ranked.candidates
    result.query_hashes, result.hashes_looked_up = ranked.query_hashes, ranked.looked_up
    speed = 1.0
    # a sped-up clip aligns in part at its own speed (the offsets drift along the clip): an answer
    # weaker than a speed change could give is checked against the other speeds too
    answered = cands[0].spread if _decisive(cands, policy) else 0
    if answered < policy.speed_min_score and len(_contenders(cands, policy)) < 2:
        for s in policy.speeds:
            r2 = _rank(library, pcm, s, policy)
            result.hashes_looked_up += r2.looked_up
            if _decisive(r2.candidates, policy, policy.speed_min_score) and r2.candidates[0].spread > answered:
                ranked, cands, speed = r2, r2.candidates, s
                break
    result.candidates = cands[: policy.candidates]
    contenders = _contenders(cands, policy)
    if not _decisive(cands, policy) and len(contenders) >= 2:
        result.match = result.ambiguous = True
        result.episodes = contenders
        result.score, result.spread, result.speed = contenders[0].score, contenders[0].spread, speed
        result.season = contenders[0].season if len({c.season for c in contenders}) == 1 else None
        result.confidence = round(1.0 / len(contenders), 3)
        result.shared_segment = _segment_label(library, contenders, seconds)
    elif _decisive(cands, policy):
        best = cands[0]
        runner = _runner_up(cands)
        result.match = True
        result.episode_id, result.season, result.title = best.episode_id, best.season, best.title
        result.offset_seconds, result.score, result.speed = best.offset_seconds, best.score, speed
        result.spread = best.spread
        result.confidence = round(1.0 - runner / best.score, 3)
        fs = library.params.frame_seconds
        again = repeats(ranked.postings, ranked.slots[(best.episode_id, best.season)], round(best.offset_seconds / fs),
                        max(policy.min_score, policy.repeat_ratio * best.score))
        result.also_at = sorted(round(off * fs, 3) for off, _ in again)
    elif cands:
        result.score, result.spread = cands[0].score, cands[0].spread
    return result
