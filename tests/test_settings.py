"""One settings source: citywok.settings is the only reader of the environment, keeps the names and
defaults, and a bad value is refused with the variable's name and what it must be."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from citywok.matcher.service.server import ServerConfig
from citywok.operator import desired
from citywok.operator.spec import parse

from citywok import settings
from citywok.errors import CityWokError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("env", "said"), [
    ({"PORT": "eighty"}, "PORT='eighty': it must be a whole number, 0 or more"),
    ({"PORT": "-1"}, "PORT='-1': it must be a whole number, 0 or more"),
    ({"MAX_UPLOAD_BYTES": "0"}, "MAX_UPLOAD_BYTES='0': it must be a whole number, 1 or more"),
    ({"MAX_QUEUE_WAIT": "-0.5"}, "MAX_QUEUE_WAIT='-0.5': it must be a number above 0"),
    ({"URL_TIMEOUT": "soon"}, "URL_TIMEOUT='soon': it must be a number above 0"),
    ({"WORKERS": "1.5"}, "WORKERS='1.5': it must be a whole number, 0 or more"),
    ({"USE_LMDB": "maybe"}, "USE_LMDB='maybe': it must be true or false"),
    ({"MAX_SEASONS": "0"}, "MAX_SEASONS='0': it must be a whole number, 1 or more"),
    ({"SEASONS": "1,two"}, "SEASONS='1,two': it must be a list of season numbers, e.g. 1,3,5"),
])
def test_a_bad_value_names_the_variable_and_what_it_must_be(env: dict[str, str], said: str) -> None:
    with pytest.raises(settings.SettingsError) as e:
        ServerConfig.from_env(env)
    assert str(e.value).startswith(said)
    assert isinstance(e.value, ValueError) and isinstance(e.value, CityWokError) and e.value.code == "bad_setting"


def test_names_and_defaults_are_the_documented_ones() -> None:
    d = ServerConfig.from_env({})
    assert (d.host, d.port, d.max_upload_bytes, d.max_queue, d.max_queue_wait, d.max_downloads) == (
        "0.0.0.0", 8000, 50 << 20, None, 0.5, 8)
    assert (d.poll_interval, d.url_timeout, d.body_timeout, d.timeline_max_seconds, d.link_cache_size,
            d.link_cache_ttl, d.shutdown_timeout) == (0.5, 15.0, 30.0, 600.0, 256, 600.0, 30.0)
    assert d.workers == d.max_concurrency == settings.cpu_budget()
    assert (d.data_dir, d.db_version, d.use_lmdb, d.ingest_token, d.sentry_dsn) == (Path("./data"), None, True,
                                                                                     None, None)
    s = settings.load({})
    assert (s.db_version, s.pin, s.s3_prefix, s.s3_bucket) == ("v1", None, "fingerprints", None)


def test_the_environment_is_read_with_its_names_and_flags_win() -> None:
    env = {"HOST": "127.0.0.1", "PORT": " 0 ", "WORKERS": "0", "MAX_QUEUE": "0", "LINK_CACHE_SIZE": "0",
           "MAX_QUEUE_WAIT": "2.5", "DB_VERSION": "v3", "DATA_DIR": "/srv/d", "SEASONS": "3,1",
           "URL_ALLOW_HOSTS": "127.0.0.1:8080", "INGEST_TOKEN": "t", "USE_LMDB": "off"}
    c = ServerConfig.from_env(env, port=9000, host=None)
    assert (c.host, c.port, c.workers, c.max_queue, c.link_cache_size, c.max_queue_wait) == (
        "127.0.0.1", 9000, 0, 0, 0, 2.5)
    assert (c.db_version, c.data_dir, c.seasons, c.ingest_token, c.use_lmdb) == ("v3", Path("/srv/d"), (1, 3), "t",
                                                                                  False)
    assert c.url_allow.address_allowed(ipaddress.ip_address("127.0.0.1"), 8080)
    assert settings.pod({"POD_NAME": "p", "POD_NAMESPACE": "n"}) == settings.Pod("p", "n", None)
    assert settings.operator_image("img:1", {}) == "img:1"
    assert settings.operator_image("img:1", {"CITYWOK_IMAGE": "img:2"}) == "img:2"


def test_serve_refuses_a_bad_value_in_one_line() -> None:
    env = {**os.environ, "PORT": "eighty"}
    r = subprocess.run([sys.executable, "-m", "citywok", "serve"], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines() == ["citywok serve: PORT='eighty': it must be a whole number, 0 or more"]


def test_settings_is_the_only_reader_of_the_environment() -> None:
    read = re.compile(r"os\.environ(?!\[[^]]+\] = )|os\.getenv|environ\.get")
    found = [f"{p.relative_to(ROOT)}:{n}" for folder in ("citywok", "matcher", "fetcher", "operator")
             for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "settings.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if read.search(line)]
    assert found == []


def test_the_operator_sets_only_variables_settings_reads() -> None:
    fdb = parse("sp", "tv", {"version": "v1", "seasons": [1, 3], "replicas": 2, "source": {
        "bucket": "b", "endpoint": "https://s3.example.com", "region": "eu-west-1",
        "credentialsSecret": {"name": "keys"}}})
    pod = desired.pod_template(fdb, "v1")["spec"]
    set_names = {e["name"] for c in pod["initContainers"] + pod["containers"] for e in c.get("env", [])}
    assert {"DATA_DIR", "SEASONS", "WORKERS", "S3_BUCKET", "AWS_REGION", "POD_NAME"} <= set_names
    assert set_names - settings.NAMES == set()
