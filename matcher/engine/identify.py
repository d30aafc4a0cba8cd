"""Clip -> answer: fingerprint the clip, look it up in every season, vote, decide.

The decision is deliberately conservative: a clip is a match only when its best offset gathers
clearly more aligned hashes than any other episode, and at least ``min_score`` of them counting at
most ``part_cap`` from each half second of the clip (its ``spread``), which chance alignments on
unindexed audio almost never do: on real music, unindexed clips that reached a dozen or more aligned
hashes had them from one or two moments (a chord two pieces share), while a true match, even at 0 dB
SNR, has them spread over the clip.
A clip the plain vote does not settle (no decisive answer, or one whose hits drift along the clip as
a time-stretched clip's do) goes to the scale search (scalesearch.py: the triplets' candidates, then the
speed, tempo and pitch hypotheses), whose answers are verified more strictly. A clip whose plain answer
drifts and whose scale search verifies nothing is no match rather than a confident answer at a wrong offset.
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

import functools
from dataclasses import dataclass

import numpy as np
from citywok.matcher.engine import edit, scale, scalesearch, timefit, triplets
from citywok.matcher.engine.answer import Candidate, Identification
from citywok.matcher.engine.catalogue import Catalogue
from citywok.matcher.engine.landmarks import landmarks
from citywok.matcher.engine.match import repeats
from citywok.matcher.engine.params import FingerprintParams
from citywok.matcher.engine.peaks import Peaks, fine_peaks
from citywok.matcher.engine.ranking import (
    DEFAULT_POLICY,
    MatchPolicy,
    Ranked,
    decisive,
    halves,
    rank_hashes,
    rank_postings,
    runner_up,
)

from citywok.errors import CityWokError

__all__ = ["DEFAULT_POLICY", "MAX_CLIP_SECONDS", "MIN_CLIP_SECONDS", "Candidate", "ClipTooShort", "Identification",
           "MatchPolicy", "identify_pcm"]

MIN_CLIP_SECONDS = 1.0
MAX_CLIP_SECONDS = 30.0


class ClipTooShort(CityWokError, ValueError):
    """Not enough audio to fingerprint."""

    status = 422
    code = "too_short"


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


def _drifts(ranked: Ranked, frame_seconds: float, policy: MatchPolicy) -> bool:
    """Whether the best candidate's hits line up clearly better at another time scale: a stretched
    clip aligns in part at scale 1, at an offset that is right for one moment of it only."""
    best = ranked.candidates[0]
    fs = frame_seconds
    fit = timefit.fit_time_scale(ranked.postings, ranked.slots[(best.episode_id, best.season)],
                               round(best.offset_seconds / fs), 1.0, span=0.06, step=0.003)
    return abs(fit.time_scale - 1) > 0.004 and fit.score > policy.drift * fit.unscaled


@dataclass
class _Clip:
    """A clip's spectrogram and dense peaks, and what the scale search needs of them, made when first asked."""

    spec: np.ndarray
    peaks: Peaks
    p: FingerprintParams
    triplets_tried: bool = False  # their lookup is made once, before or in the scale search

    @functools.cached_property
    def fine(self) -> Peaks:
        return fine_peaks(self.spec, self.peaks, self.p)

    @functools.cached_property
    def shapes(self) -> triplets.Shapes:
        return triplets.clip_shapes(self.peaks, self.fine, self.p)

    def dense_shapes(self, policy: MatchPolicy) -> triplets.Shapes:
        return triplets.clip_shapes(self.peaks, self.fine, self.p, *policy.dense_triplets)


def _plain(library: Catalogue, clip: _Clip, policy: MatchPolicy) -> tuple[Ranked, scalesearch.Scaled | None, int]:
    """The vote at scale 1: most clips are decided by half of their hashes, at half the cost; any doubt
    and the other half is looked up too, and all of them vote. A clip of which the first half finds next to
    nothing (``triplets_first``: an edited clip, most likely) looks up its triplets before the other
    half, and an answer they verify ends it there. Returns the vote, that answer, and the triplet lookups."""
    hashes = landmarks(scale.plain_peaks(clip.peaks, library.params), library.params)
    first, rest = halves(hashes)
    ranked = rank_hashes(library, first, policy)
    if decisive(ranked.candidates, policy, policy.half_min_score):
        return ranked, None, 0
    looked_up = 0
    if not ranked.candidates or ranked.candidates[0].spread < policy.triplets_first:
        early, looked_up = scalesearch.triplet_search(library, clip.fine, clip.shapes, policy)
        clip.triplets_tried = True
        if early is not None:
            return ranked, early, looked_up
    return rank_postings(library, ranked.postings.joined(library.lookup(rest)), len(hashes), policy), None, looked_up


def identify_pcm(library: Catalogue, pcm: np.ndarray, policy: MatchPolicy = DEFAULT_POLICY) -> Identification:
    """Identify mono PCM at the library's sample rate."""
    p = library.params
    seconds = pcm.size / p.sample_rate
    if seconds < MIN_CLIP_SECONDS:
        raise ClipTooShort(f"the clip has {seconds:.2f} s of audio; at least {MIN_CLIP_SECONDS:g} s is needed")
    pcm = pcm[: int(MAX_CLIP_SECONDS * p.sample_rate)]
    seconds_kept = pcm.size / p.sample_rate
    result = Identification(match=False, clip_seconds=round(seconds, 3), db_version=library.version)
    spec = scale.clip_spectrogram(pcm, p)
    clip = _Clip(spec, scale.clip_peaks(spec, p, policy.dense_peaks), p)
    ranked, scaled, looked_up = _plain(library, clip, policy)
    cands = ranked.candidates
    result.query_hashes, result.hashes_looked_up = ranked.query_hashes, ranked.looked_up + looked_up
    hyp = scale.Hypothesis(1.0, 1.0)
    plain_ok = decisive(cands, policy)
    drifting = plain_ok and _drifts(ranked, p.frame_seconds, policy)
    answered = cands[0].spread if plain_ok and not drifting else 0
    if scaled is None and answered < policy.speed_min_score and len(_contenders(cands, policy)) < 2:
        shapes = None if clip.triplets_tried else clip.shapes
        scaled, looked_up = scalesearch.search(library, clip.fine, shapes, lambda: clip.dense_shapes(policy), policy,
                                               answered == 0, seconds_kept)
        result.hashes_looked_up += looked_up
    if scaled is not None and scaled.ranked.candidates[0].spread > answered:
        ranked, hyp, drifting = scaled.ranked, scaled.hypothesis, False
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
    if not decisive(cands, policy) and len(contenders) >= 2:
        result.match = result.ambiguous = True
        result.episodes = contenders
        result.score, result.spread = contenders[0].score, contenders[0].spread
        result.season = contenders[0].season if len({c.season for c in contenders}) == 1 else None
        result.confidence = round(1.0 / len(contenders), 3)
        result.shared_segment = _segment_label(library, contenders, seconds)
    elif decisive(cands, policy) and not drifting:
        best = cands[0]
        runner = runner_up(cands)
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
