"""IPv6 addresses that carry an IPv4 one (6to4, Teredo, NAT64, mapped) are judged by what they carry."""

from __future__ import annotations

import ipaddress

import pytest
import requests
from citywok.matcher.service.urlfetch import forbidden_reason


@pytest.mark.parametrize("addr,inner", [("2002:7f00:1::1", "loopback"), ("2002:a9fe:a9fe::1", "metadata"),
                                        ("2002:0a00:0001::1", "private"), ("2001:0:7f00:1::1", "loopback"),
                                        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
                                        ("64:ff9b::a9fe:a9fe", "metadata"), ("::ffff:10.0.0.1", "private")])
def test_wrapped_private_addresses_are_refused_for_what_they_wrap(addr: str, inner: str) -> None:
    why = forbidden_reason(ipaddress.ip_address(addr))
    assert why is not None and inner in why and "wrapped" in why


def test_public_addresses_stay_allowed() -> None:
    assert forbidden_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert forbidden_reason(ipaddress.ip_address("2002:808:808::1")) is None  # 6to4 of a public address


def test_a_6to4_url_to_loopback_is_403(server) -> None:
    r = requests.post(f"{server.url}/api/v1/identify", json={"url": "http://[2002:7f00:1::1]:9/clip.mp3"}, timeout=30)
    assert r.status_code == 403 and "loopback" in r.json()["message"], r.text
