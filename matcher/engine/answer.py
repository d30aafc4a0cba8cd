"""What identification answers: the episode, where in it, at what scales, and the evidence (the API's
and the CLI's fields come from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Candidate:
    episode_id: str
    season: int
    offset_seconds: float
    score: int  # aligned hashes at the offset (+-1 frame)
    title: str | None = None
    spread: int = 0  # the same, counting at most MatchPolicy.part_cap from each half second of the clip


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
    speed: float = 1.0  # the same as time_scale (older clients read it)
    time_scale: float = 1.0  # the clip plays this many times faster than the episode
    pitch_scale: float = 1.0  # the clip's frequencies are this many times the episode's
    edit: str | None = None  # the scale change in words: "sped up 1.25x", "pitch +3.0 semitones, tempo kept"
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
