"""Answers in words for people: what `citywok identify` prints (the JSON answer says the same to programs)."""

from __future__ import annotations

from typing import Any

NO_MATCH_ADVICE = "try a longer clip, or one with less music or talk over it"
RUNNER_UP_HASHES = 3  # fewer align by chance between any two episodes: not worth a line


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 episode``, ``2 episodes``; ``many`` for irregular plurals (``hash`` -> ``hashes``)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def clock(seconds: float) -> str:
    """``m:ss.ss``: where in the episode, as a player shows it."""
    m, s = divmod(max(0.0, float(seconds)), 60)
    if round(s, 2) >= 60:
        m, s = m + 1, 0.0
    return f"{int(m)}:{s:05.2f}"


def episode_name(c: dict[str, Any]) -> str:
    """``S01E02 "Title"`` (the title only when there is one besides the id)."""
    title = c.get("title")
    return f'{c["episode_id"]} "{title}"' if title and title != c["episode_id"] else str(c["episode_id"])


def seasons_text(seasons: list[int]) -> str:
    return ("season " if len(seasons) == 1 else "seasons ") + ", ".join(str(n) for n in seasons)


def answer_lines(answer: dict[str, Any], episodes: int, seasons: list[int]) -> list[str]:
    """The identify answer (its JSON form) as lines of text."""
    scale = _scale(answer)
    if answer.get("ambiguous"):
        lines = [f"this audio is in {plural(len(answer['episodes']), 'episode')}"
                 f" ({answer.get('shared_segment') or 'shared audio'}): it could be any of"]
        lines += [f"  {episode_name(c)}, season {c['season']}, at {clock(c['offset_seconds'])}"
                  for c in answer["episodes"]]
        return lines + ["  a longer clip that reaches past the shared part tells them apart"]
    if answer.get("match"):
        hashes = plural(answer["score"], "matching hash", "matching hashes")
        lines = [f"{episode_name(answer)}, season {answer['season']}, at {clock(answer['offset_seconds'])}"
                 f" (confidence {answer['confidence']:.2f}, {hashes}{scale})"]
        if answer.get("also_at"):
            lines.append(f"  the same audio is also at {', '.join(clock(t) for t in sorted(answer['also_at']))}")
        best = (answer["episode_id"], answer["season"])
        others = sorted((c for c in answer.get("candidates", [])
                         if (c["episode_id"], c["season"]) != best and c["score"] >= RUNNER_UP_HASHES),
                        key=lambda c: (-c["score"], c["season"], c["episode_id"]))
        lines += [f"  runner-up: {episode_name(c)}, season {c['season']}, at {clock(c['offset_seconds'])}"
                  f" ({plural(c['score'], 'matching hash', 'matching hashes')})" for c in others[:2]]
        return lines
    return [f"no match among {plural(episodes, 'episode')} in {seasons_text(seasons) if seasons else 'no seasons'}:"
            f" {NO_MATCH_ADVICE}"]


def _scale(answer: dict[str, Any]) -> str:
    """The estimated speed and pitch change of an edited clip, when the answer has one: its ``edit`` in
    words ("sped up 1.25x"), or the factors of an older answer that has none."""
    if answer.get("edit"):
        return f", {answer['edit']}"
    parts = []
    for key, what in (("time_scale", "played at"), ("pitch_scale", "pitch at")):
        v = answer.get(key)
        if isinstance(v, int | float) and abs(v - 1.0) >= 0.005:
            parts.append(f"{what} {v:.0%}")
    if not parts and isinstance(answer.get("speed"), int | float) and abs(answer["speed"] - 1.0) >= 0.005:
        parts.append(f"played at {answer['speed']:.0%}")
    return "".join(f", {p}" for p in parts)
