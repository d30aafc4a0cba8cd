"""Clip -> answer: fingerprint the clip, look it up in every season, vote, decide.

The decision is deliberately conservative: a clip is a match only when its best offset gathers
clearly more aligned hashes than any other episode, and at least ``min_score`` of them counting at
most ``part_cap`` from each half second of the clip (its ``spread``), which chance alignments on
unindexed audio almost never do: on real music, unindexed clips that reached a dozen or more aligned
hashes had them from one or two moments (a chord two pieces share), while a true match, even at 0 dB
SNR, has them spread over the clip.
A clip the plain vote does not settle (no decisive answer, or one whose hits drift along the clip as
a time-stretched clip's do) is searched under scale hypotheses (matcher/engine/scale.py: speed, tempo
and pitch changes applied to its peaks, at fractional frames and bins; a clip with no plain answer
that those verify nothing of, on the plane of time and pitch scaled apart too); a line's coarse winner
that stands out of its line is refined at once, the other candidates only when no line's winner
verified; a refined candidate is verified by a fresh vote at the refined scales, which must clear
``scale_min_score`` and stand well above the best other episode (the less spread its evidence, the
further above). A clip whose plain answer drifts and whose scale search verifies nothing is no match rather
than a confident answer at a wrong offset.
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

from dataclasses import dataclass, replace

import numpy as np
from citywok.matcher.engine import edit, scale, timefit, triplets
from citywok.matcher.engine.answer import Candidate, Identification
from citywok.matcher.engine.catalogue import Catalogue, Postings
from citywok.matcher.engine.landmarks import Hashes, landmarks
from citywok.matcher.engine.match import repeats, spread, vote
from citywok.matcher.engine.peaks import Peaks, fine_peaks

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
    speed_min_score: int = 20  # a plain answer this strong is not searched at other scales
    grid: scale.ScaleGrid = scale.ScaleGrid()
    dense_peaks: int = 20  # clip peaks per bucket kept for the scale search (the index keeps 14)
    coarse_min_score: int = 4  # a coarse alignment weaker than this is not refined (verification guards the rest)
    waiting_min_score: int = 7  # a line's candidate that did not stand out is refined only with this much:
    # a clip of an edit off the lines (or of no episode) has weaker ones on every line, and each costs a lookup
    refined: int = 2  # coarse candidates kept per line, and waiting candidates refined when no line's winner verified
    stand_out: float = 2.0  # a line's coarse winner this many times the line's next slot is refined at once
    plane_reach: int = 2  # off the lines, refinement spans this many half time steps either side, and ...
    plane_min_score: int = 6  # ... a coarse candidate needs this much: the plane holds several times the lines'
    # hypotheses, so chance alignments reach higher there
    scale_min_score: int = 16  # a verified scaled answer's spread: every hypothesis is a chance of a fluke ...
    scale_margin: float = 3.0  # ... so it must also stand this far above the best other episode at its scales,
    scale_strong: int = 24  # ... unless its spread is this high (then ``margin`` will do: a real partial match)
    scale_weak: int = 12  # a spread down to this (a short or noisy clip) passes only ...
    scale_weak_margin: float = 4.0  # ... this far above the best other episode
    scale_sure: int = 30  # a verified scaled answer this strong ends the search (the later lines are not tried)
    triplet_min_score: int = 5  # a triplet vote's candidate (matcher/engine/triplets.py) is verified with this much
    drift: float = 1.3  # a plain answer whose hits line up this much better at another time scale drifts
    candidates: int = 5
    repeat_ratio: float = 0.5  # another offset of the same episode with this share of the best score
    half_min_score: int = 20  # a first vote of half the hashes decides only with more evidence than a match needs


DEFAULT_POLICY = MatchPolicy()


@dataclass(frozen=True)
class Ranked:
    """One pass of lookup and voting: candidates (best first) and what they came from."""

    candidates: list[Candidate]
    query_hashes: int
    looked_up: int
    postings: Postings
    slots: dict[tuple[str, int], int]  # (episode id, season) -> slot in the postings


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


@dataclass(frozen=True)
class Scaled:
    """A verified answer under a scale hypothesis."""

    ranked: Ranked
    hypothesis: scale.Hypothesis


def _verify(library: Catalogue, peaks: Peaks, h: scale.Hypothesis, policy: MatchPolicy) -> Ranked:
    """A fresh, full vote with every hash of the clip under one hypothesis."""
    hashes = scale.batch_hashes(peaks, [h], library.params)
    return _rank_hashes(library, hashes, policy)


def _refine(library: Catalogue, peaks: Peaks, found: scale.Found, policy: MatchPolicy, reach: int = 1
            ) -> Scaled | None:
    """The coarse winner's hypothesis refined on a local grid (one lookup), its time scale fitted to
    the hits, then verified by a fresh vote at the refined scales."""
    hyps = policy.grid.around(found.hypothesis, reach)
    g = policy.grid
    hashes = scale.batch_hashes(peaks, hyps, library.params, g.refine_fanout, g.refine_dt_max)
    postings = scale.slot_postings(library.lookup(hashes), found.slot)
    mine = next((f for f in scale.vote_hypotheses(postings, hyps, top=64) if f.slot == found.slot), found)
    k = hyps.index(min(hyps, key=lambda h: abs(h.pitch_scale - mine.hypothesis.pitch_scale)
                       + abs(h.time_scale - mine.hypothesis.time_scale)))
    local = scale.hypothesis_postings(postings, k)
    fit = timefit.fit_time_scale(local, found.slot, mine.offset, mine.hypothesis.time_scale)
    h = scale.Hypothesis(fit.time_scale, mine.hypothesis.pitch_scale)
    ranked = _verify(library, peaks, h, policy)
    if not _verified(ranked.candidates, policy):
        return None
    return _fitted(ranked, h, library.params.frame_seconds)


def _fitted(ranked: Ranked, h: scale.Hypothesis, frame_seconds: float) -> Scaled:
    """The verified answer with its time scale and offset from the line through its hits: the vote's
    pooled bins place a clip played slightly off the hypothesis' scale by the middle of its hits."""
    best = ranked.candidates[0]
    line = timefit.fitted_line(ranked.postings, ranked.slots[(best.episode_id, best.season)],
                               round(best.offset_seconds / frame_seconds))
    if line is None:
        return Scaled(ranked, h)
    moved = replace(best, offset_seconds=round(line.offset * frame_seconds, 3))
    return Scaled(replace(ranked, candidates=[moved, *ranked.candidates[1:]]),
                  scale.Hypothesis(h.time_scale * line.slope, h.pitch_scale))


def _verified(cands: list[Candidate], policy: MatchPolicy) -> bool:
    """A scaled answer is trusted with more evidence than a plain one: chance alignments picked as the
    best of many hypotheses reach a spread of a plain match, but stay close to the best other episode.
    The less spread, the further above it the answer must stand."""
    if not _decisive(cands, policy, policy.scale_weak):
        return False
    spread_ = cands[0].spread
    if spread_ >= policy.scale_strong:
        return True
    margin = policy.scale_margin if spread_ >= policy.scale_min_score else policy.scale_weak_margin
    return cands[0].score >= margin * _runner_up(cands)


def _scale_search(library: Catalogue, peaks: Peaks, shapes: triplets.Shapes, policy: MatchPolicy, plane: bool,
                  seconds: float) -> tuple[Scaled | None, int]:
    """The best verified answer under the scale hypotheses, and the distinct hashes looked up.

    The triplets come first: one lookup for every scale, each candidate verified at the scales its hits
    read. When they verify nothing (a catalogue without triplets, a clip under music), the lines are
    searched one by one. A line's coarse winner is refined at once when it stands out of
    its line (the line of the clip's edit, mostly); the other candidates wait, and the strongest
    ``refined`` of them are refined only when no line's winner verified (a noisy clip's true
    alignment ties with chance in the coarse vote). An answer of ``scale_sure`` ends the search. When
    the lines verify nothing and ``plane`` (no plain answer either), the plane off the lines is
    searched: a tempo change with a pitch shift on top."""
    best, looked_up = _triplet_search(library, peaks, shapes, policy)
    if best is not None:
        return best, looked_up
    waiting: list[scale.Found] = []
    grid = policy.grid.for_clip(seconds)
    for line in grid.lines():
        found, n = scale.search(peaks, library.params, library.lookup, grid, line, policy.refined)
        looked_up += n
        if scale.stands_out(found, policy.coarse_min_score, policy.stand_out):
            best = _better(best, _refine(library, peaks, found[0], policy))
            found = found[1:]
        waiting += [f for f in found if f.score >= policy.waiting_min_score]
        if _sure(best, policy):
            return best, looked_up
    if best is None:
        best = _best_refined(library, peaks, sorted(waiting, key=lambda f: -f.score)[: policy.refined], policy)
    if best is None and plane:
        found, n = scale.search_plane(peaks, library.params, library.lookup, grid, policy.refined)
        looked_up += n
        best = _best_refined(library, peaks, found, policy, policy.plane_reach, policy.plane_min_score)
    return best, looked_up


def _triplet_search(library: Catalogue, peaks: Peaks, shapes: triplets.Shapes, policy: MatchPolicy
                    ) -> tuple[Scaled | None, int]:
    """The triplet vote's candidates, each verified at the scales its hits read (refined on the local
    grid when that fails), the strongest first; the first verified is the answer."""
    g = policy.grid
    pitches = (min(g.time_range[0], g.pitch_range[0]), max(g.time_range[1], g.pitch_range[1]))
    postings = library.lookup_triplets(triplets.query_hashes(shapes, library.params, pitches))
    for f in triplets.vote(postings, shapes, g.time_range, pitches, top=policy.refined):
        if f.score < policy.triplet_min_score:
            break
        found = _at_candidate(library, peaks, f, policy)
        if found is not None:
            return found, postings.looked_up
    return None, postings.looked_up


def _at_candidate(library: Catalogue, peaks: Peaks, f: scale.Found, policy: MatchPolicy) -> Scaled | None:
    """A triplet candidate verified at the scales its hits read, its time scale first fitted to the hits
    of that vote (a tempo change keeps the timing inside a note, so short triplets read a time scale a
    little closer to 1 than the clip's; verified off the clip's own scale, a repeat of the passage can
    outscore it). Refined on the local grid when that does not verify."""
    h = f.hypothesis
    ranked = _verify(library, peaks, h, policy)
    fit = timefit.fit_time_scale(ranked.postings, f.slot, f.offset, h.time_scale, span=0.025)
    if abs(fit.time_scale / h.time_scale - 1) > REFIT and fit.score > fit.unscaled:
        refit = scale.Hypothesis(fit.time_scale, h.pitch_scale)
        again = _verify(library, peaks, refit, policy)
        if _verified(again.candidates, policy):
            return _fitted(again, refit, library.params.frame_seconds)
    if _verified(ranked.candidates, policy):
        return _fitted(ranked, h, library.params.frame_seconds)
    return _refine(library, peaks, f, policy)


REFIT = 0.003  # a fitted time scale this far from the triplets' is verified again


def _better(best: Scaled | None, s: Scaled | None) -> Scaled | None:
    """The verified answer with the more spread evidence."""
    if s is None or (best is not None and best.ranked.candidates[0].spread >= s.ranked.candidates[0].spread):
        return best
    return s


def _sure(best: Scaled | None, policy: MatchPolicy) -> bool:
    return best is not None and best.ranked.candidates[0].spread >= policy.scale_sure


def _best_refined(library: Catalogue, peaks: Peaks, found: list[scale.Found], policy: MatchPolicy, reach: int = 1,
                  min_score: int | None = None) -> Scaled | None:
    """The strongest verified refinement of the coarse candidates (strongest first) of at least
    ``min_score`` (``coarse_min_score`` by default); one of ``scale_sure`` ends the search."""
    best: Scaled | None = None
    floor = policy.coarse_min_score if min_score is None else min_score
    for f in found:
        if f.score < floor:
            break
        best = _better(best, _refine(library, peaks, f, policy, reach))
        if _sure(best, policy):
            break
    return best


def _drifts(ranked: Ranked, frame_seconds: float, policy: MatchPolicy) -> bool:
    """Whether the best candidate's hits line up clearly better at another time scale: a stretched
    clip aligns in part at scale 1, at an offset that is right for one moment of it only."""
    best = ranked.candidates[0]
    fs = frame_seconds
    fit = timefit.fit_time_scale(ranked.postings, ranked.slots[(best.episode_id, best.season)],
                               round(best.offset_seconds / fs), 1.0, span=0.06, step=0.003)
    return abs(fit.time_scale - 1) > 0.004 and fit.score > policy.drift * fit.unscaled


def _plain(library: Catalogue, peaks: Peaks, policy: MatchPolicy) -> Ranked:
    """The vote at scale 1: most clips are decided by half of their hashes, at half the cost; any doubt
    and the other half is looked up too, and all of them vote."""
    hashes = landmarks(scale.plain_peaks(peaks, library.params), library.params)
    first, rest = _halves(hashes)
    ranked = _rank_hashes(library, first, policy)
    if not _decisive(ranked.candidates, policy, policy.half_min_score):
        ranked = _ranked(library, ranked.postings.joined(library.lookup(rest)), len(hashes), policy)
    return ranked


def identify_pcm(library: Catalogue, pcm: np.ndarray, policy: MatchPolicy = DEFAULT_POLICY) -> Identification:
    """Identify mono PCM at the library's sample rate."""
    p = library.params
    seconds = pcm.size / p.sample_rate
    if seconds < MIN_CLIP_SECONDS:
        raise ClipTooShort(f"the clip has {seconds:.2f} s of audio; at least {MIN_CLIP_SECONDS:g} s is needed")
    pcm = pcm[: int(MAX_CLIP_SECONDS * p.sample_rate)]
    result = Identification(match=False, clip_seconds=round(seconds, 3), db_version=library.version)
    spec = scale.clip_spectrogram(pcm, p)
    peaks = scale.clip_peaks(spec, p, policy.dense_peaks)
    ranked = _plain(library, peaks, policy)
    cands = ranked.candidates
    result.query_hashes, result.hashes_looked_up = ranked.query_hashes, ranked.looked_up
    hyp = scale.Hypothesis(1.0, 1.0)
    plain_ok = _decisive(cands, policy)
    drifting = plain_ok and _drifts(ranked, p.frame_seconds, policy)
    answered = cands[0].spread if plain_ok and not drifting else 0
    if answered < policy.speed_min_score and len(_contenders(cands, policy)) < 2:
        fine = fine_peaks(spec, peaks, p)
        scaled, looked_up = _scale_search(library, fine, triplets.clip_shapes(peaks, fine, p), policy, answered == 0,
                                          pcm.size / p.sample_rate)
        result.hashes_looked_up += looked_up
        if scaled is not None and scaled.ranked.candidates[0].spread > answered:
            ranked, cands, hyp, drifting = scaled.ranked, scaled.ranked.candidates, scaled.hypothesis, False
    _decide(result, library, ranked, hyp, drifting, policy)
    return result


def _decide(result: Identification, library: Catalogue, ranked: Ranked, hyp: scale.Hypothesis, drifting: bool,
            policy: MatchPolicy) -> None:
    """Fill in the answer from the chosen vote: a match, an ambiguous match, or no match."""
    cands = ranked.candidates
    seconds = result.clip_seconds
    result.candidates = cands[: policy.candidates]
    result.time_scale = result.speed = round(float(hyp.time_scale), 4)
    result.pitch_scale = round(float(hyp.pitch_scale), 4)
    result.edit = edit.describe(hyp.time_scale, hyp.pitch_scale)
    contenders = _contenders(cands, policy)
    if not _decisive(cands, policy) and len(contenders) >= 2:
        result.match = result.ambiguous = True
        result.episodes = contenders
        result.score, result.spread = contenders[0].score, contenders[0].spread
        result.season = contenders[0].season if len({c.season for c in contenders}) == 1 else None
        result.confidence = round(1.0 / len(contenders), 3)
        result.shared_segment = _segment_label(library, contenders, seconds)
    elif _decisive(cands, policy) and not drifting:
        best = cands[0]
        runner = _runner_up(cands)
        result.match = True
        result.episode_id, result.season, result.title = best.episode_id, best.season, best.title
        result.offset_seconds, result.score = best.offset_seconds, best.score
        result.spread = best.spread
        result.confidence = round(1.0 - runner / best.score, 3)
        fs = library.params.frame_seconds
        again = repeats(ranked.postings, ranked.slots[(best.episode_id, best.season)], round(best.offset_seconds / fs),
                        max(policy.min_score, policy.repeat_ratio * best.score))
        result.also_at = sorted(round(off * fs, 3) for off, _ in again)
    elif cands:
        result.score, result.spread = cands[0].score, cands[0].spread
