"""A scale hypothesis in words, as the page and the CLI show it ("sped up 1.25x")."""

from __future__ import annotations

import math


def describe(time_scale: float, pitch_scale: float, tolerance: float = 0.015) -> str | None:
    """What a person reads: "sped up 1.25x", "tempo 0.80x, pitch kept", "pitch +3.0 semitones"."""
    same_time, same_pitch = abs(time_scale - 1) < tolerance, abs(pitch_scale - 1) < tolerance
    semis = 12 * math.log2(pitch_scale)
    if same_time and same_pitch:
        return None
    if abs(pitch_scale / time_scale - 1) < tolerance:
        return f"sped up {time_scale:.2f}x" if time_scale > 1 else f"slowed down to {time_scale:.2f}x"
    if same_pitch:
        return f"tempo {time_scale:.2f}x, pitch kept"
    if same_time:
        return f"pitch {semis:+.1f} semitones, tempo kept"
    return f"tempo {time_scale:.2f}x, pitch {semis:+.1f} semitones"
