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
TITLES = ("Grand Opening", "The Long Night", "Kitchen Fire", "Delivery", "Health Inspection", "Closing Time")


def episode_files(src: Path, episodes: int = 6, seconds: float = 90.0) -> list[Path]:
    """Generated episodes named as a media library names them (``Show - S01E02 - Title.flac``)."""
    src.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(1, episodes + 1):
        path = src / f"Demo Show - S01E{i:02d} - {TITLES[(i - 1) % len(TITLES)]}.flac"
        if not path.exists():
            path.write_bytes(synth.encode(synth.episode(i, seconds, RATE), RATE, "flac"))
        out.append(path)
    return out


def clip(data_dir: Path, seconds: float = 90.0) -> Path:
    """A 5 s clip from episode 3 at 0:42, re-encoded to a low-bitrate MP3 with noise, as a phone would hear it."""
    start = 42.0
    x = synth.episode(3, seconds, RATE)[int(start * RATE) : int((start + 5) * RATE)]
    path = data_dir / "demo-clip.mp3"
    path.write_bytes(synth.encode(synth.add_noise(x, 10, seed=7), RATE, "mp3", bitrate=64000))
    return path


def run(data_dir: Path, episodes: int = 6, seconds: float = 90.0) -> int:
    src = data_dir / "demo-episodes"
    episode_files(src, episodes, seconds)
    print(f"$ citywok ingest {src} --season 1")
    rc = citywok(["ingest", str(src), "--season", "1", "--data-dir", str(data_dir)])
    if rc:
        return rc
    path = clip(data_dir, seconds)
    print(f"\n$ citywok identify {path}   # cut from S01E03 at 0:42.00, mp3 64 kbit/s, 10 dB SNR")
    return citywok(["identify", str(path), "--data-dir", str(data_dir)])


if __name__ == "__main__":
    sys.exit(run(settings.load().data_dir))
