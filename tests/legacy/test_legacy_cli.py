"""The legacy commands as a user runs them: output and exit codes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citywok.cli import main as citywok

from .conftest import Corpus


def _clip(corpus: Corpus, tmp_path: Path, name: str = "s2e1@3") -> Path:
    path = tmp_path / "clip.mp3"
    path.write_bytes(corpus.clips[name])
    return path


def test_ingest_format_pickle_writes_the_legacy_file(corpus: Corpus, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    args = ["ingest", str(corpus.episodes / "season_2"), "--season", "2", "--format", "pickle",
            "--data-dir", str(data), "--no-progress", "--workers", "1"]
    assert citywok(args) == 0
    assert "season 02 (pickle): 2 added" in capsys.readouterr().out
    assert sorted(p.name for p in data.iterdir()) == ["season_02.pkl"]  # no LMDB, no manifest
    assert citywok(args) == 0
    assert "0 added, 0 replaced, 2 skipped" in capsys.readouterr().out


def test_ingest_pickle_refuses_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert citywok(["ingest", "--season", "1", "--format", "pickle", "--remove", "S01E01",
                    "--data-dir", str(tmp_path)]) == 2
    assert "LMDB shards only" in capsys.readouterr().err


def test_identify_with_use_lmdb_false_serves_the_pickles(corpus: Corpus, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    clip = _clip(corpus, tmp_path)
    monkeypatch.setenv("USE_LMDB", "false")
    assert citywok(["identify", str(clip), "--json", "--data-dir", str(corpus.pickles)]) == 0
    legacy_answer = json.loads(capsys.readouterr().out)
    assert (legacy_answer["episode_id"], legacy_answer["season"], legacy_answer["db_version"]) == (
        "S02E01", 2, "legacy-pickle")
    monkeypatch.setenv("USE_LMDB", "true")
    assert citywok(["identify", str(clip), "--json", "--data-dir", str(corpus.native)]) == 0
    lmdb_answer = json.loads(capsys.readouterr().out)
    for k in ("elapsed_ms", "db_version"):
        legacy_answer.pop(k), lmdb_answer.pop(k)
    assert legacy_answer == lmdb_answer


def test_identify_use_lmdb_false_without_pickles(corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("USE_LMDB", "false")
    assert citywok(["identify", str(_clip(corpus, tmp_path)), "--data-dir", str(tmp_path / "empty")]) == 1
    assert "no legacy season databases" in capsys.readouterr().err


def test_identify_refuses_a_foreign_pickle_without_running_it(corpus: Corpus, tmp_path: Path) -> None:
    """End to end through the installed command: the payload would create a file; it must not."""
    data = tmp_path / "data"
    data.mkdir()
    marker = tmp_path / "pwned"

    class RunsShell:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    (data / "season_01.pkl").write_bytes(pickle.dumps({"version": 1, "evil": RunsShell()}))
    citywok_bin = shutil.which("citywok", path=str(Path(sys.executable).parent))
    assert citywok_bin
    proc = subprocess.run([citywok_bin, "identify", str(_clip(corpus, tmp_path)), "--data-dir", str(data)],
                          env={**os.environ, "USE_LMDB": "false"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"{data / 'season_01.pkl'}: not a CityWok legacy database" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_migrate_and_validate_exit_codes(corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert citywok(["migrate", str(corpus.pickles), str(out)]) == 0
    text = capsys.readouterr().out
    assert "summary: 2 migrated, 0 skipped, 0 failed" in text and "MB" in text
    assert citywok(["migrate", str(corpus.pickles), str(out)]) == 0
    assert "0 migrated, 2 skipped" in capsys.readouterr().out

    assert citywok(["validate", str(corpus.pickles), str(out)]) == 0
    text = capsys.readouterr().out
    assert "season 01: PASSED" in text and "season 02: PASSED" in text

    shutil.rmtree(out / "season_02.lmdb")
    assert citywok(["validate", str(corpus.pickles), str(out)]) == 1
    text = capsys.readouterr().out
    assert "season 01: PASSED" in text and "season 02: FAILED" in text

    empty = tmp_path / "empty"
    empty.mkdir()
    assert citywok(["migrate", str(empty), str(out)]) == 2
    assert citywok(["validate", str(empty), str(out)]) == 2
    assert "no legacy season databases" in capsys.readouterr().err


def test_migrate_exits_1_when_a_season_fails(corpus: Corpus, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(corpus.pickles / "season_01.pkl", src)
    (src / "season_02.pkl").write_bytes(b"\x80\x04not a pickle at all")
    assert citywok(["migrate", str(src), str(tmp_path / "out")]) == 1
    text = capsys.readouterr().out
    assert "1 migrated, 0 skipped, 1 failed" in text and "season_02.pkl" in text


def test_migrate_writes_a_servable_version(corpus: Corpus, tmp_path: Path) -> None:
    """`citywok migrate SRC` (no DST) writes DATA_DIR/fingerprints/DB_VERSION with a manifest; `use` serves it."""
    data = tmp_path / "data"
    env = {**os.environ, "DATA_DIR": str(data), "DB_VERSION": "legacy1"}
    cmd = [sys.executable, "-m", "citywok"]
    r = subprocess.run([*cmd, "migrate", str(corpus.pickles)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "serve it with `citywok use legacy1`" in r.stdout
    from citywok import layout

    manifest = layout.read_manifest(layout.version_dir(data, "legacy1"))
    assert sorted(manifest["seasons"]) == ["01", "02"] and manifest["version"] == "legacy1"
    env.pop("DB_VERSION")
    assert subprocess.run([*cmd, "use", "legacy1"], env=env, capture_output=True, timeout=60).returncode == 0
    r = subprocess.run([*cmd, "identify", str(_clip(corpus, tmp_path)), "--json"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["episode_id"] == "S02E01"
