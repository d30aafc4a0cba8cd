"""The commands as a user runs them: settings from the environment, exit codes, and no secrets in logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ACCESS_KEY, SECRET_KEY
from fetcher_testkit import make_season

from citywok import layout


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetcher", "-v", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env(data_dir: Path, bucket: str, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "POD_", "DB_"))}
    env.update(
        DATA_DIR=str(data_dir),
        S3_BUCKET=bucket,
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="auto",
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    return env


def test_pack_push_fetch_commands_from_env(tmp_path: Path, bucket: str, proxy) -> None:
    make_season(layout.version_dir(tmp_path / "build", "v1"), 1, [1, 2], seconds=20)
    build = cli_env(tmp_path / "build", bucket, proxy.url)
    node = cli_env(tmp_path / "node", bucket, proxy.url)
    p = run(["pack", "--version", "v1"], build)
    assert p.returncode == 0, p.stderr
    assert "packed 1 seasons of v1" in p.stdout
    p = run(["push", "--version", "v1", "--no-progress"], build)
    assert p.returncode == 0, p.stderr
    assert "1 uploaded" in p.stdout
    p = run(["push", "--version", "v1", "--no-progress"], build)
    assert "0 uploaded" in p.stdout and "1 unchanged" in p.stdout
    p = run(["fetch", "--version", "v1", "--once", "--no-progress"], node)
    assert p.returncode == 0, p.stderr
    assert layout.current_version(tmp_path / "node") == "v1"
    status = json.loads((tmp_path / "node" / "fetcher-status.json").read_text())
    assert status["served_version"] == "v1" and status["fetch_error"] is None
    logs = p.stdout + p.stderr
    assert SECRET_KEY not in logs and ACCESS_KEY not in logs

    p = run(["fetch", "--version", "v404", "--once", "--no-progress"], node)
    assert p.returncode == 1
    assert "version v404 is not in the bucket" in p.stderr
    assert SECRET_KEY not in p.stderr and ACCESS_KEY not in p.stderr
    assert layout.current_version(tmp_path / "node") == "v1"
    status = json.loads((tmp_path / "node" / "fetcher-status.json").read_text())
    assert status["served_version"] == "v1" and "v404" in status["fetch_error"]


def test_fetch_without_bucket_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    p = run(["fetch", "--version", "v1", "--data-dir", str(tmp_path)], env)
    assert p.returncode == 1 and "no bucket: set S3_BUCKET" in p.stderr


def test_subcommand_version_flag_lives_beside_the_program_version() -> None:
    """`citywok fetch --version V` is a fingerprint version; `citywok --version` stays the program's."""
    import argparse

    from citywok.fetcher import cli

    parser = argparse.ArgumentParser(prog="citywok")
    parser.add_argument("--version", action="version", version="citywok 0")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fetch", "--version", "v7", "--watch", "--version-file", "/cfg/version", "--keep", "3"])
    assert (args.db_version, args.watch, args.keep, str(args.version_file)) == ("v7", True, 3, "/cfg/version")
    assert parser.parse_args(["pack", "--format", "gz"]).format == "gz"
    assert parser.parse_args(["push", "--bucket", "b", "--prefix", "p"]).prefix == "p"


def test_push_to_a_missing_bucket_is_a_clear_error(tmp_path: Path, moto_endpoint: str) -> None:
    make_season(layout.version_dir(tmp_path, "v1"), 1, [1], seconds=10)
    env = cli_env(tmp_path, "no-such-bucket", moto_endpoint)
    assert run(["pack", "--version", "v1"], env).returncode == 0
    p = run(["push", "--version", "v1", "--no-progress"], env)
    assert p.returncode == 1, p.stderr
    assert "citywok push: " in p.stderr and "NoSuchBucket" in p.stderr and "Traceback" not in p.stderr
    assert SECRET_KEY not in p.stderr
    p = run(["push", "--version", "v2", "--no-progress"], env)
    assert p.returncode == 1 and "run `citywok pack --db-version v2` first" in p.stderr
