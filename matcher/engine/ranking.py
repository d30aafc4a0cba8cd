"""The vote and what it takes to decide: the policy's thresholds, a ranked vote (candidates with the spread
of their evidence), and whether one episode is clearly ahead. Used by the plain decision (identify.py) and
by the scale search (scalesearch.py) alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from citywok.matcher.engine import scale
from citywok.matcher.engine.answer import Candidate
from citywok.matcher.engine.catalogue import Catalogue, Postings
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.match import spread, vote


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
    narrow_slots: int = 8  # a coarse search looks its second half of hashes up in the seasons of this many of
    narrow_min_score: int = 2  # ... the first half's best slots, of at least this many hits each
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
    dense_triplets: tuple[int, int] = (12, 6)  # peaks per bucket and targets per anchor of a clip's second, denser
    # triplet lookup, made when the first verified nothing: music over the clip takes its strongest peaks
    dense_triplet_min_score: int = 8  # ... whose candidates need more hits (more lookups, more chance hits)
    drift: float = 1.3  # a plain answer whose hits line up this much better at another time scale drifts
    candidates: int = 5
    repeat_ratio: float = 0.5  # another offset of the same episode with this share of the best score
    half_min_score: int = 20  # a first vote of half the hashes decides only with more evidence than a match needs
    triplets_first: int = 8  # a first half whose best spread is below this looks up triplets before the rest


DEFAULT_POLICY = MatchPolicy()


@dataclass(frozen=True)
class Ranked:
    """One pass of lookup and voting: candidates (best first) and what they came from."""

    candidates: list[Candidate]
    query_hashes: int
    looked_up: int
    postings: Postings
    slots: dict[tuple[str, int], int]  # (episode id, season) -> slot in the postings


def halves(hashes: Hashes) -> tuple[Hashes, Hashes]:
    """The hashes split about in two by a mix of their bits (not by time or frequency)."""
    pick = ((hashes.hash.astype(np.uint64) * np.uint64(0x9E3779B1)) & np.uint64(0x80000000)) == 0
    return Hashes(hashes.hash[pick], hashes.t[pick]), Hashes(hashes.hash[~pick], hashes.t[~pick])


def rank_hashes(library: Catalogue, hashes: Hashes, policy: MatchPolicy) -> Ranked:
    return rank_postings(library, library.lookup(hashes), len(hashes), policy)


def rank_postings(library: Catalogue, postings: Postings, query_hashes: int, policy: MatchPolicy) -> Ranked:
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


def runner_up(cands: list[Candidate]) -> int:
    best = cands[0]
    return next((c.score for c in cands[1:] if (c.episode_id, c.season) != (best.episode_id, best.season)), 0)


def decisive(cands: list[Candidate], policy: MatchPolicy, min_score: int | None = None) -> bool:
    """One episode is ahead of every other by ``margin``: a clip straddling shared and unique audio
    is, once its unique part carries a third of the evidence."""
    floor = policy.min_score if min_score is None else min_score
    return bool(cands) and cands[0].spread >= floor and cands[0].score >= policy.margin * runner_up(cands)
