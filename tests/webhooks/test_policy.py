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


# Fullwidth full stop U+FF0E, ideographic full stop U+3002, halfwidth ideographic U+FF61.
DOTS = ["\uff0e", "\u3002", "\uff61"]


@pytest.mark.parametrize("dot", DOTS)
def test_ssrf_by_unicode_dots_to_the_metadata_address_is_refused(dot: str) -> None:
    url = "http://" + dot.join(["169", "254", "169", "254"]) + "/latest/meta-data/"
    with pytest.raises(errors.InvalidRequest, match="169.254.169.254 is link-local"):
        validate_release_url(url)


@pytest.mark.parametrize("dot", DOTS)
def test_ssrf_by_unicode_dots_to_loopback_and_private_is_refused(dot: str) -> None:
    loopback = "http://" + dot.join(["127", "0", "0", "1"]) + ":9000/release"
    with pytest.raises(errors.InvalidRequest, match="127.0.0.1 is loopback"):
        validate_release_url(loopback, allow_loopback=False)
    private = "http://" + dot.join(["10", "1", "2", "3"]) + "/release"
    with pytest.raises(errors.InvalidRequest, match="10.1.2.3 is a private address"):
        validate_release_url(private, allow_private=False)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://\uff11\uff16\uff19.254.169.254/", "169.254.169.254 is link-local"),  # digits
        ("http://[2002:a9fe:a9fe::]/release", "embeds 169.254.169.254 is link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/release", "embeds 169.254.169.254 is link-local"),
        ("http://[::a9fe:a9fe]/release", "embeds 169.254.169.254 is link-local"),
        ("http://0\uff0e0\uff0e0\uff0e0/release", "unspecified"),
        ("http://127\uff0e1/release", "not a canonical IP"),
        ("http://evil\uff0ecom\uff0fx/release", "NFKC"),
        ("http://a\u2488.com/release", "not a valid domain name"),
    ],
)
def test_other_spellings_of_forbidden_hosts_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        validate_release_url(url)
    assert fragment in info.value.detail


def test_a_unicode_host_is_kept_in_its_normalised_form() -> None:
    # What is stored (and shown) is the name that will be looked up.
    assert (
        validate_release_url("http://\uff4e\uff49\uff43\uff10\uff0eexample.com:8080/r?x=1")
        == "http://nic0.example.com:8080/r?x=1"
    )
    assert validate_release_url("https://b\u00fccher.example/r") == "https://xn--bcher-kva.example/r"
    # ASCII URLs come back exactly as given.
    assert validate_release_url("http://Nic0.Example.com/R") == "http://Nic0.Example.com/R"
