"""The embedded-default demo: generate a few episodes, ingest them into ./data, identify a clip.

No bucket and no cluster: this is the main job end to end on a local DATA_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

from citywok import settings
from citywok.cli import main as citywok
from citywok.matcher import synth

RATE = 22050


def run(data_dir: Path, episodes: int = 6, seconds: float = 90.0) -> int:
    src = data_dir / "demo-episodes"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(1, episodes + 1):
        path = src / f"Demo.Show.S01E{i:02d}.flac"
        if not path.exists():
            path.write_bytes(synth.encode(synth.episode(i, seconds, RATE), RATE, "flac"))
    print(f"$ citywok ingest {src} --season 1")
    rc = citywok(["ingest", str(src), "--season", "1", "--data-dir", str(data_dir)])
    if rc:
        return rc
    # a 5 s clip from episode 3 at 0:42, re-encoded to a low-bitrate MP3 with noise, as a phone would hear it
    start = 42.0
    x = synth.episode(3, seconds, RATE)[int(start * RATE) : int((start + 5) * RATE)]
    clip = data_dir / "demo-clip.mp3"
    clip.write_bytes(synth.encode(synth.add_noise(x, 10, seed=7), RATE, "mp3", bitrate=64000))
    print(f"\n$ citywok identify {clip}   # cut from S01E03 at 0:42.00, mp3 64 kbit/s, 10 dB SNR")
    return citywok(["identify", str(clip), "--data-dir", str(data_dir)])


if __name__ == "__main__":
    sys.exit(run(settings.load().data_dir))
