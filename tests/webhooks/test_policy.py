"""The release-URL policy, case by case."""

from __future__ import annotations

import pytest

from pageholder.service.core import errors
from pageholder.service.webhooks.policy import validate_release_url


@pytest.mark.parametrize(
    "url",
    [
        "https://nic0.example.com/release",
        "http://nic0.internal:8080/v1/release?x=1",
        "http://127.0.0.1:9000/release",
        "http://[::1]:9000/release",
        "http://10.0.0.1/release",
        "https://93.184.216.34/release",
    ],
)
def test_release_url_accepted(url: str) -> None:
    assert validate_release_url(url) == url


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://nic0.example.com/release", "http or https"),
        ("nic0.example.com/release", "http or https"),
        ("http:///release", "must name a host"),
        ("http://user:pw@nic0.example.com/", "credentials"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/release", "link-local"),
        ("http://224.0.0.1/release", "multicast"),
        ("http://[ff02::1]/release", "multicast"),
        ("http://0.0.0.0/release", "unspecified"),
        ("http://[::]/release", "unspecified"),
        ("http://240.0.0.1/release", "reserved"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://2130706433/release", "not a canonical IP"),
        ("http://127.1/release", "not a canonical IP"),
        ("http://nic0.example.com:99999/", "not a valid URL"),
        ("http://nic0.example.com/a b", "spaces or control"),
    ],
)
def test_release_url_refused(url: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        validate_release_url(url)
    assert fragment in info.value.detail
    assert info.value.detail.startswith("release_url ")
    assert info.value.extra == {"field": "release_url"}


def test_release_url_loopback_and_private_can_be_refused() -> None:
    with pytest.raises(errors.InvalidRequest, match="loopback"):
        validate_release_url("http://127.0.0.1/release", allow_loopback=False)
    with pytest.raises(errors.InvalidRequest, match="loopback"):
        validate_release_url("http://[::1]/release", allow_loopback=False)
    with pytest.raises(errors.InvalidRequest, match="private"):
        validate_release_url("http://10.0.0.1/release", allow_private=False)
    with pytest.raises(errors.InvalidRequest, match="private"):
        validate_release_url("http://[fd00::1]/release", allow_private=False)
    # Loopback is its own switch, and names are never resolved.
    assert validate_release_url("http://127.0.0.1/", allow_private=False)
    assert validate_release_url("http://localhost/", allow_loopback=False, allow_private=False)
