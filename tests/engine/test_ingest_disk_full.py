"""A volume that refuses to grow mid-ingest is a clear message, never an lmdb.Error traceback.

The file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) makes the kernel refuse writes past a size
the way a full disk refuses them past its end, for this process only."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys

from citywok.matcher import synth

from citywok import layout


def _limited(nbytes: int):  # noqa: ANN202
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_ingest_into_a_volume_that_cannot_grow(tmp_path) -> None:
    eps = tmp_path / "eps"
    eps.mkdir()
    for n in (1, 2):
        (eps / f"S01E0{n}.flac").write_bytes(synth.encode(synth.episode(n, 120.0, 8000), 8000, "flac"))
    r = subprocess.run([sys.executable, "-m", "citywok", "ingest", str(eps), "--season", "1", "--workers", "1",
                        "--no-progress", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True,
                       timeout=300, preexec_fn=_limited(96 << 10))
    assert r.returncode != 0 and r.returncode > 0
    assert "Traceback" not in r.stderr and "lmdb.Error" not in r.stderr, r.stderr[-2000:]
    assert "failed" in (r.stdout + r.stderr)
    shard = layout.version_dir(tmp_path / "data", "v1") / layout.season_name(1)
    if (shard / "data.mdb").exists():
        from citywok.lmdbfile import check_file

        check_file(shard / "data.mdb")  # what is there is whole: the failed write changed nothing
