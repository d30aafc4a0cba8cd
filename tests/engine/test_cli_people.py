"""`citywok` as a person meets it, through the real command (a subprocess): failures end in one line and
a documented exit code, answers name titles and speak plainly, versions can be seen and switched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from citywok.matcher import synth

from citywok import layout
from tests.support import private_copy

RATE = 22050
NAMES = {1: "Show - S01E01 - The Pilot.flac", 2: "Show.S01E02.Second.Wind.720p.WEB-DL.x264-GRP.flac",
         3: "Show.S01E03.flac"}


def run(*args: str, data: Path | None = None, env: dict[str, str] | None = None, shell: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DB_VERSION", "MAX_SEASONS", "USE_LMDB"}}
    full = {**base, **({"DATA_DIR": str(data)} if data else {}), **(env or {})}
    cmd: list[str] | str = shell or [sys.executable, "-m", "citywok", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full, shell=bool(shell))


def one_line_error(r: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("people")
    eps = root / "eps"
    eps.mkdir()
    for seed, name in NAMES.items():
        (eps / name).write_bytes(synth.encode(synth.episode(seed, 30, RATE), RATE, "flac"))
    x = synth.episode(2, 30, RATE)[int(11.5 * RATE): int(16.5 * RATE)]
    (root / "clip.mp3").write_bytes(synth.encode(x, RATE, "mp3", 64000))
    (root / "stranger.mp3").write_bytes(synth.encode(synth.episode(77, 5, RATE), RATE, "mp3", 64000))
    r = run("ingest", str(eps), "--season", "1", "--no-progress", data=root / "data")
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    return private_copy(built, tmp_path / "w")


# -- 1. failures ---------------------------------------------------------------------------------------


def test_a_closed_pipe_is_not_a_traceback(root: Path) -> None:
    r = run(shell=f"{sys.executable} -m citywok identify {root / 'clip.mp3'} | head -c 3; exit ${{PIPESTATUS[0]}}",
            data=root / "data")
    assert r.stdout == "S01" and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_remove_from_a_missing_season_or_a_missing_episode_fails(root: Path) -> None:
    one_line_error(run("ingest", "--season", "5", "--remove", "S01E01", data=root / "data"), 2, "no season 5")
    r = run("ingest", "--season", "1", "--remove", "S01E77", data=root / "data")
    assert r.returncode == 1 and "S01E77: not in season 1" in r.stdout


@pytest.mark.parametrize("env,word", [({"USE_LMDB": "fasle"}, "USE_LMDB='fasle'"),
                                      ({"MAX_SEASONS": "abc"}, "MAX_SEASONS='abc'"),
                                      ({"MAX_SEASONS": "0"}, "MAX_SEASONS='0'")])
def test_bad_environment_values_are_one_line(root: Path, env: dict[str, str], word: str) -> None:
    for cmd in (["identify", str(root / "clip.mp3")], ["serve"], ["pack"]):
        one_line_error(run(*cmd, data=root / "data", env=env), 2, word)
    r = run("identify", str(root / "clip.mp3"), "--json", data=root / "data", env=env)
    assert json.loads(r.stdout) == {"error": "usage", "message": r.stderr.split(": ", 1)[1].strip(), "exit_code": 2}


def test_serve_on_a_busy_port_says_so(root: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("serve", "--host", "127.0.0.1", "--port", str(port), data=root / "data", env={"WORKERS": "0"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "address already in use" in r.stderr


def test_a_current_link_to_itself_is_explained(root: Path) -> None:
    link = layout.fingerprints_dir(root / "data") / layout.CURRENT
    link.unlink()
    link.symlink_to("current")
    one_line_error(run("identify", str(root / "clip.mp3"), data=root / "data"), 2, "points at 'current'",
                   "citywok use")
    assert run("use", "v1", data=root / "data").returncode == 0
    assert run("identify", str(root / "clip.mp3"), data=root / "data").returncode == 0


def test_a_data_dir_that_is_a_file_is_one_line(root: Path) -> None:
    (root / "plain-file").write_text("not a folder")
    r = run("ingest", str(root / "eps"), "--season", "1", "--no-progress", data=root / "plain-file")
    one_line_error(r, 1, "plain-file")


def test_nonsense_numbers_are_refused(root: Path) -> None:
    r = run("ingest", str(root / "eps"), "--season", "-1", data=root / "data")
    assert r.returncode == 2 and "season must be a whole number from 1 to 99" in r.stderr
    assert not list(layout.version_dir(root / "data", "v1").glob("season_-*"))
    r = run("identify", str(root / "clip.mp3"), "--max-seasons", "0", data=root / "data")
    assert r.returncode == 2 and "must be at least 1, not 0" in r.stderr


def test_a_too_short_file_says_how_long_it_is(root: Path) -> None:
    short = root / "Show.S01E09.flac"
    short.write_bytes(synth.encode(synth.episode(9, 0.5, RATE), RATE, "flac"))
    r = run("ingest", str(short), "--season", "1", "--no-progress", data=root / "data")
    assert r.returncode == 1 and "only 0.50 s of audio; an episode needs at least 1 s" in r.stderr


def test_a_missing_file_is_named_once_and_a_url_is_kept_whole(root: Path) -> None:
    missing = root / "nope.mp3"
    for extra in ([], ["--json"]):
        r = run("identify", str(missing), *extra, data=root / "data")
        one_line_error(r, 2, "no such file")
        assert r.stderr.count(str(missing)) == 1
    url = "https://example.com/a//b.mp3?x=1&y=2"
    r = run("identify", url, data=root / "data")
    assert r.returncode != 0 and url in r.stderr and "Traceback" not in r.stderr


def test_exit_codes_are_documented() -> None:
    r = run("--help")
    assert r.returncode == 0
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code in ("0", "1", "2", "3", "70", "130"):
        assert f"\n  {code:<4}" in r.stdout
        assert f"| {code} |" in readme


# -- 2. titles -------------------------------------------------------------------------------------------


def test_titles_from_names_and_from_a_titles_file(root: Path) -> None:
    data = root / "data"
    r = run("episodes", "--season", "1", data=data)
    assert r.returncode == 0, r.stderr
    assert [line.split("  ")[0] for line in r.stdout.splitlines()[:3]] == ["S01E01", "S01E02", "S01E03"]
    assert "The Pilot" in r.stdout and "Second Wind" in r.stdout and "(no title)" in r.stdout
    answer = json.loads(run("identify", str(root / "clip.mp3"), "--json", data=data).stdout)
    assert answer["title"] == "Second Wind" and answer["candidates"][0]["title"] == "Second Wind"
    assert run("identify", str(root / "clip.mp3"), data=data).stdout.startswith('S01E02 "Second Wind"')
    (root / "titles.csv").write_text("episode_id,title\nS01E03,Third Time, Lucky\n")
    r = run("ingest", str(root / "eps"), "--season", "1", "--titles", str(root / "titles.csv"), "--no-progress",
            data=data)
    assert "3 skipped" in r.stdout  # unchanged audio is not fingerprinted again to take a title
    (root / "titles.json").write_text(json.dumps({"S01E01": "Pilot (Director's Cut)"}))
    run("ingest", str(root / "eps"), "--season", "1", "--titles", str(root / "titles.json"), "--no-progress",
        data=data)
    rows = json.loads(run("episodes", "--season", "1", "--json", data=data).stdout)
    assert {r["episode_id"]: r["title"] for r in rows} == {
        "S01E01": "Pilot (Director's Cut)", "S01E02": "Second Wind", "S01E03": "Third Time, Lucky"}
    (root / "bad.json").write_text("[1, 2]")
    one_line_error(run("ingest", str(root / "eps"), "--season", "1", "--titles", str(root / "bad.json"),
                       data=data), 2, "bad.json")


# -- 3. versions -----------------------------------------------------------------------------------------


def test_versions_use_and_the_db_version_pin(root: Path) -> None:
    data = root / "data"
    r = run("ingest", str(root / "eps" / NAMES[3]), "--season", "2", "--db-version", "v2", "--no-progress",
            data=data)
    assert r.returncode == 0, r.stderr
    (layout.fingerprints_dir(data) / "v3").mkdir()
    r = run("versions", data=data)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("* v1: 1 season (1), 3 episodes") and lines[0].endswith("<- current")
    assert lines[1].startswith("  v2: 1 season (2), 1 episode,") and "incomplete" in lines[2]
    one_line_error(run("use", "v3", data=data), 2, "incomplete")
    one_line_error(run("use", "v9", data=data), 2, "no version v9")
    assert run("use", "v2", data=data).stdout.strip() == "current -> v2 (was v1)"
    assert layout.current_version(data) == "v2"
    assert run("identify", str(root / "clip.mp3"), data=data).returncode == 3
    assert run("identify", str(root / "clip.mp3"), data=data, env={"DB_VERSION": "v1"}).returncode == 0
    assert run("identify", str(root / "clip.mp3"), "--db-version", "v1", data=data).returncode == 0
    one_line_error(run("identify", str(root / "clip.mp3"), data=data, env={"DB_VERSION": "v3"}), 2, "incomplete")


def test_the_version_option_is_spelled_one_way() -> None:
    for cmd in ("ingest", "identify", "serve", "migrate", "episodes", "pack", "push", "fetch"):
        r = run(cmd, "--help")
        assert "--db-version VERSION" in r.stdout, cmd
        assert "--version " not in r.stdout.replace("--version-file", ""), cmd


# -- 4. words --------------------------------------------------------------------------------------------


def test_answers_speak_plainly(root: Path) -> None:
    data = root / "data"
    r = run("identify", str(root / "stranger.mp3"), data=data)
    assert r.returncode == 3
    assert r.stdout.strip() == ("no match among 3 episodes in season 1: try a longer clip, or one with less music"
                                " or talk over it")
    r = run("identify", str(root / "clip.mp3"), data=data)
    first = r.stdout.splitlines()[0]
    assert first.startswith('S01E02 "Second Wind", season 1, at 0:11.') and "spread" not in r.stdout
    assert first.count("0:11.") == 1 and " s," not in first and "offset" not in first
    assert " 1 hashes" not in r.stdout and " 1 matching hashes" not in r.stdout


def test_readme_samples_are_what_the_commands_print(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- samples: make demo -->\n```\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k not in {"DATA_DIR", "DB_VERSION", "MAX_SEASONS"}}
    demo = subprocess.run([sys.executable, "-m", "citywok.demo"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    runs = [chunk.split("\n", 1) for chunk in block.split("$ citywok ")[1:]]
    assert len(runs) >= 3
    for command, expected in runs:
        r = subprocess.run([sys.executable, "-m", "citywok", *command.split()], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.stdout + r.stderr == expected, command


def test_progress_in_a_log_is_plain_lines(root: Path) -> None:
    r = run("ingest", str(root / "eps"), "--season", "3", data=root / "data")  # stderr is a pipe here
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith("100%|")
    assert len(r.stderr.splitlines()) <= 3
    r = run("pack", data=root / "data")  # the fetcher's bars too
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "100%|" in r.stderr.splitlines()[-1]


def test_completion_and_help_on_every_argument() -> None:
    r = run("completion", "bash")
    assert r.returncode == 0 and "complete" in r.stdout and "identify" in r.stdout and "--db-version" in r.stdout
    from citywok.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        fmt = p._get_formatter()
        for a in p._actions:
            if a.help == "==SUPPRESS==" or a.dest == "help":
                continue
            assert a.help, f"citywok {name} {a.option_strings or a.dest} has no help"
            if a.option_strings and a.nargs != 0 and not a.required:  # a flag's default is off
                assert "default" in fmt._get_help_string(a), f"citywok {name} {a.option_strings}: no default"
    assert "(default: 10.0)" in run("fetch", "--help").stdout
