"""The address policy, address by address: what a release call may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from pageholder.service.webhooks.addresses import AddressPolicy, embedded_ipv4

STRICT = AddressPolicy(allow_loopback=False, allow_private=False)
LENIENT = AddressPolicy(allow_loopback=True, allow_private=True)

# Teredo: 2001:0:<server>:<flags>:<~port>:<~client>; this one's client is 169.254.169.254.
TEREDO_TO_METADATA = "2001:0:4136:e378:8000:63bf:5601:5601"


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("169.254.169.254", "169.254.169.254 is link-local"),
        ("::ffff:169.254.169.254", "embeds 169.254.169.254 is link-local"),
        ("::a9fe:a9fe", "embeds 169.254.169.254 is link-local"),  # IPv4-compatible
        ("2002:a9fe:a9fe::", "embeds 169.254.169.254 is link-local"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 is link-local"),  # NAT64
        (TEREDO_TO_METADATA, "embeds 169.254.169.254 is link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("0.1.2.3", "0.0.0.0/8"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("2002:e000:0001::", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fec0::1", "reserved"),  # site-local, deprecated
        ("64:ff9b:1::1", "reserved"),  # local-use NAT64: no well-known place for the IPv4
    ],
)
def test_always_refused_whatever_the_settings(address: str, fragment: str) -> None:
    ip = ipaddress.ip_address(address)
    for policy in (STRICT, LENIENT):
        why = policy.refusal(ip)
        assert why is not None and fragment in why, (policy, why)


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1", "2002:7f00:0001::"]
)
def test_loopback_only_when_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert LENIENT.refusal(ip) is None
    assert AddressPolicy(allow_loopback=True, allow_private=False).refusal(ip) is None
    why = AddressPolicy(allow_loopback=False, allow_private=True).refusal(ip)
    assert why is not None and "loopback, which is not allowed here" in why


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "198.18.0.1",  # benchmarking
        "fd00::1",  # unique local
        "::ffff:10.1.2.3",
        "2002:0a01:0203::",  # 6to4 of 10.1.2.3
        "64:ff9b::a01:203",  # NAT64 of 10.1.2.3
    ],
)
def test_private_only_when_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert LENIENT.refusal(ip) is None
    why = AddressPolicy(allow_loopback=True, allow_private=False).refusal(ip)
    assert why is not None and "private address, which is not allowed here" in why


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "2606:2800:220:1:248:1893:25c8:1946",
        "2002:5db8:d822::",  # 6to4 of 93.184.216.34
        "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
        "::ffff:93.184.216.34",
    ],
)
def test_public_addresses_are_allowed_even_by_the_strict_policy(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None


def test_embedded_ipv4_forms() -> None:
    v4 = ipaddress.IPv4Address("169.254.169.254")
    for form in ("::ffff:169.254.169.254", "::a9fe:a9fe", "2002:a9fe:a9fe::", "64:ff9b::a9fe:a9fe"):
        assert embedded_ipv4(ipaddress.IPv6Address(form)) == (v4,), form
    server, client = embedded_ipv4(ipaddress.IPv6Address(TEREDO_TO_METADATA))
    assert client == v4 and server == ipaddress.IPv4Address("65.54.227.120")
    # ::1 and :: are themselves, not IPv4-compatible 0.0.0.1 / 0.0.0.0; plain IPv6 carries none
    assert embedded_ipv4(ipaddress.IPv6Address("::1")) == ()
    assert embedded_ipv4(ipaddress.IPv6Address("::")) == ()
    assert embedded_ipv4(ipaddress.IPv6Address("2606:2800:220:1::1")) == ()
