"""docs/deploy.md's kind walk-through minus Kubernetes: the same commands against the same dev S3
server (hack/kind/s3.Dockerfile's own command), then the pod's two steps (`fetch --once`, `serve`)
on a fresh volume, and the identify call the guide ends with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.chart.chartkit import ROOT
from tests.support import free_port


def citywok(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "citywok", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"citywok {' '.join(args)}:\n{proc.stderr[-2000:]}"
    return proc.stdout


def identify(port: int, clip: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp3\"\r\n"
            f"Content-Type: audio/mpeg\r\n\r\n").encode() + clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/identify", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_guide_flow_demo_pack_push_fetch_serve_identify(tmp_path: Path) -> None:
    s3_port, http_port = free_port(), free_port()
    base = dict(os.environ)
    s3 = subprocess.Popen(json.loads(DockerfileParser(str(ROOT / "hack/kind/s3.Dockerfile")).cmd),
                          env={**base, "PORT": str(s3_port)}, stdout=subprocess.PIPE, text=True)
    server = None
    try:
        while "bucket citywok" not in s3.stdout.readline():
            assert s3.poll() is None, "the dev S3 server died"
        work = {**base, "DATA_DIR": str(tmp_path / "data")}
        subprocess.run([sys.executable, "-m", "citywok.demo"], env=work, check=True, capture_output=True,
                       timeout=300)                                   # make demo
        citywok("pack", "--version", "v1", "--no-progress", env=work)
        keys = {"AWS_ACCESS_KEY_ID": "dev", "AWS_SECRET_ACCESS_KEY": "dev"}
        citywok("push", "--version", "v1", "--bucket", "citywok", "--endpoint-url", f"http://localhost:{s3_port}",
                "--region", "us-east-1", "--no-progress", env={**work, **keys})
        # The pod: what the FingerprintDB of hack/kind/values.yaml gives its containers, on an empty volume.
        pod = {**base, **keys, "DATA_DIR": str(tmp_path / "pod-volume"), "S3_BUCKET": "citywok",
               "AWS_ENDPOINT_URL": f"http://localhost:{s3_port}", "AWS_REGION": "us-east-1"}
        citywok("fetch", "--once", "--version", "v1", "--no-progress", env=pod)
        server = subprocess.Popen([sys.executable, "-m", "citywok", "serve"], env={
            **pod, "HOST": "127.0.0.1", "PORT": str(http_port)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = identify(http_port, tmp_path / "data" / "demo-clip.mp3")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "the matcher never answered"
                time.sleep(0.3)
    finally:
        for proc in (server, s3):
            if proc is not None:
                proc.kill()
                proc.wait()
    assert answer["match"] is True and answer["episode_id"] == "S01E03" and answer["db_version"] == "v1", answer
    assert abs(answer["offset_seconds"] - 42.0) < 0.5, answer
