"""Fingerprint parameters: the one place they are defined.

Every shard records the parameters it was built with; a shard built with other parameters is refused
(its hashes would silently never match).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class FingerprintParams:
    sample_rate: int = 8000
    n_fft: int = 512  # 64 ms window, 15.6 Hz per bin
    hop: int = 128  # 16 ms per frame
    min_bin: int = 3  # below ~47 Hz is hum and rumble
    max_bin: int = 255  # exclusive; keeps f1 in 8 bits
    peak_time_radius: int = 4  # a peak is the maximum of +-4 frames ...
    peak_freq_radius: int = 8  # ... and +-8 bins around it
    bucket_frames: int = 32  # peak density is controlled per 0.5 s bucket ...
    peaks_per_bucket: int = 14  # ... keeping the strongest N local maxima
    fanout: int = 5  # each anchor pairs with the N strongest peaks in its target zone
    target_dt_min: int = 1
    target_dt_max: int = 63  # frames, fits 6 bits
    target_df_min: int = 1  # a pair at one frequency (a held note) matches any held note in that key
    target_df_max: int = 63  # bins either side, fits 7 bits

    @property
    def frame_seconds(self) -> float:
        return self.hop / self.sample_rate

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> FingerprintParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown fingerprint parameters: {sorted(unknown)}")
        return cls(**d)

    def digest(self) -> str:
        """A short stable id of the parameter set, recorded in shards and manifests."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


DEFAULT_PARAMS = FingerprintParams()
