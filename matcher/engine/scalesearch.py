"""The scale search: a clip the plain vote does not settle, searched for speed, tempo and pitch changes.

The triplets (triplets.py) come first: one lookup for every scale, each candidate verified at the scales its
hits read. When they verify nothing (a clip under music, a catalogue without triplets), the scale
hypotheses (scale.py) are searched: the speed, tempo and pitch lines, then the plane off them, each with
half its hashes in every season and the rest only where the first half found candidates. A candidate
is refined on a local grid and verified by a fresh vote at its scales, which must clear ``scale_min_score``
and stand well above the best other episode (the less spread its evidence, the further above).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from citywok.matcher.engine import scale, timefit, triplets
from citywok.matcher.engine.answer import Candidate
from citywok.matcher.engine.catalogue import Catalogue
from citywok.matcher.engine.landmarks import Hashes
from citywok.matcher.engine.match import repeats
from citywok.matcher.engine.peaks import Peaks
from citywok.matcher.engine.ranking import MatchPolicy, Ranked, decisive, halves, rank_hashes, rank_postings, runner_up


@dataclass(frozen=True)
class Scaled:
    """A verified answer under a scale hypothesis."""

    ranked: Ranked
    hypothesis: scale.Hypothesis


def verify(library: Catalogue, peaks: Peaks, h: scale.Hypothesis, policy: MatchPolicy) -> Ranked:
    """A fresh vote with the clip's hashes under one hypothesis: half of them first, which settle it when
    their answer passes verification with ``half_min_score`` spread (as the plain vote's first half must),
    then all of them."""
    hashes = scale.batch_hashes(peaks, [h], library.params)
    first, rest = halves(hashes)
    ranked = rank_hashes(library, first, policy)
    cands = ranked.candidates
    settled = cands and cands[0].spread >= policy.half_min_score and verified(cands, policy)
    if settled and not _recurs(ranked, policy, library.params.frame_seconds):
        return ranked
    return rank_postings(library, ranked.postings.joined(library.lookup(rest)), len(hashes), policy)


def _recurs(ranked: Ranked, policy: MatchPolicy, frame_seconds: float) -> bool:
    """Whether the best episode aligns about as well at another offset (a loop, a repeated phrase): half the
    hashes are too few to choose between the two."""
    best = ranked.candidates[0]
    at = round(best.offset_seconds / frame_seconds)
    return bool(repeats(ranked.postings, ranked.slots[(best.episode_id, best.season)], at,
                        policy.repeat_ratio * best.score))


def _refine(library: Catalogue, peaks: Peaks, found: scale.Found, policy: MatchPolicy, reach: int = 1
            ) -> Scaled | None:
    """The coarse winner's hypothesis refined on a local grid (one lookup), its time scale fitted to
    the hits, then verified by a fresh vote at the refined scales."""
    g = policy.grid
    hyps = g.around(found.hypothesis, reach)
    hashes = scale.batch_hashes(peaks, hyps, library.params, g.refine_fanout, g.refine_dt_max)
    postings = scale.slot_postings(library.lookup(hashes), found.slot)
    mine = next((f for f in scale.vote_hypotheses(postings, hyps, top=64) if f.slot == found.slot), found)
    k = hyps.index(min(hyps, key=lambda h: abs(h.pitch_scale - mine.hypothesis.pitch_scale)
                       + abs(h.time_scale - mine.hypothesis.time_scale)))
    local = scale.hypothesis_postings(postings, k)
    fit = timefit.fit_time_scale(local, found.slot, mine.offset, mine.hypothesis.time_scale)
    h = scale.Hypothesis(fit.time_scale, mine.hypothesis.pitch_scale)
    ranked = verify(library, peaks, h, policy)
    if not verified(ranked.candidates, policy):
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


def verified(cands: list[Candidate], policy: MatchPolicy) -> bool:
    """A scaled answer is trusted with more evidence than a plain one: chance alignments picked as the
    best of many hypotheses reach a spread of a plain match, but stay close to the best other episode.
    The less spread, the further above it the answer must stand."""
    if not decisive(cands, policy, policy.scale_weak):
        return False
    spread_ = cands[0].spread
    if spread_ >= policy.scale_strong:
        return True
    margin = policy.scale_margin if spread_ >= policy.scale_min_score else policy.scale_weak_margin
    return cands[0].score >= margin * runner_up(cands)


def search(library: Catalogue, peaks: Peaks, shapes: triplets.Shapes | None, dense: Callable[[], triplets.Shapes],
           policy: MatchPolicy, plane: bool, seconds: float) -> tuple[Scaled | None, int]:
    """The best verified answer under the scale hypotheses, and the distinct hashes looked up.

    The triplets come first: one lookup for every scale, each candidate verified at the scales its hits
    read. When they verify nothing (a catalogue without triplets, a clip under music), the lines are
    searched one by one. A line's coarse winner is refined at once when it stands out of
    its line (the line of the clip's edit, mostly); the other candidates wait, and the strongest
    ``refined`` of them are refined only when no line's winner verified (a noisy clip's true
    alignment ties with chance in the coarse vote). An answer of ``scale_sure`` ends the search. When
    the lines verify nothing and ``plane`` (no plain answer either), the plane off the lines is
    searched: a tempo change with a pitch shift on top. ``shapes`` None: the triplets were tried; ``dense``
    makes the denser ones, only when they are looked up."""
    best, looked_up = triplet_search(library, peaks, shapes, policy) if shapes is not None else (None, 0)
    if best is None:
        best, n = triplet_search(library, peaks, dense(), policy, policy.dense_triplet_min_score)
        looked_up += n
    if best is not None:
        return best, looked_up
    waiting: list[scale.Found] = []
    grid = policy.grid.for_clip(seconds)
    for line in grid.lines():
        found, n = coarse(library, scale.line_hashes(peaks, library.params, grid, line), line, policy)
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
        hashes, hyps = scale.plane_hashes(peaks, library.params, grid)
        found, n = coarse(library, hashes, hyps, policy, grid.plane_table_bits)
        looked_up += n
        best = _best_refined(library, peaks, found, policy, policy.plane_reach, policy.plane_min_score)
    return best, looked_up


def coarse(library: Catalogue, hashes: Hashes, hyps: list[scale.Hypothesis], policy: MatchPolicy,
           max_bits: int | None = None) -> tuple[list[scale.Found], int]:
    """The coarse vote of ``hyps``' batched hashes: the best ``refined`` slots, and the hashes looked up. Half
    the hashes are looked up in every season, the other half only in the seasons of the first half's best
    ``narrow_slots`` of at least ``narrow_min_score`` hits, and nowhere when there are none (a clip of
    nothing indexed): the hypotheses' hashes are many, and each costs a read in every season."""
    first, rest = halves(hashes)
    postings = library.lookup(first)
    lead = [f.slot for f in scale.vote_hypotheses(postings, hyps, policy.narrow_slots, max_bits=max_bits)
            if f.score >= policy.narrow_min_score]
    if lead:
        postings = postings.joined(library.lookup_near(rest, lead))
    return scale.vote_hypotheses(postings, hyps, policy.refined, max_bits=max_bits), postings.looked_up


def triplet_search(library: Catalogue, peaks: Peaks, shapes: triplets.Shapes, policy: MatchPolicy,
                   min_score: int | None = None) -> tuple[Scaled | None, int]:
    """The triplet vote's candidates of at least ``min_score`` (``triplet_min_score``), each verified at
    the scales its hits read (refined on the local grid when that fails), the strongest first; the first
    verified is the answer."""
    g = policy.grid
    pitches = (min(g.time_range[0], g.pitch_range[0]), max(g.time_range[1], g.pitch_range[1]))
    postings = library.lookup_triplets(triplets.query_hashes(shapes, library.params, pitches))
    floor = policy.triplet_min_score if min_score is None else min_score
    for f in triplets.vote(postings, shapes, g.time_range, pitches, top=policy.refined):
        if f.score < floor:
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
    ranked = verify(library, peaks, h, policy)
    fit = timefit.fit_time_scale(ranked.postings, f.slot, f.offset, h.time_scale, span=0.025)
    if abs(fit.time_scale / h.time_scale - 1) > REFIT and fit.score > fit.unscaled:
        refit = scale.Hypothesis(fit.time_scale, h.pitch_scale)
        again = verify(library, peaks, refit, policy)
        if verified(again.candidates, policy):
            return _fitted(again, refit, library.params.frame_seconds)
    if verified(ranked.candidates, policy):
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
