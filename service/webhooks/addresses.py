"""Which IP addresses the registry may call: the address half of the release-URL policy.

Used twice: on a literal host when a release URL is registered, and on every address a
host name resolves to each time the webhook client connects (see ``transport``).

An IPv6 address that carries an IPv4 address is judged by the IPv4 address it carries,
since that is where the packets end up: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
``::a.b.c.d``, 6to4 ``2002:aabb:ccdd::/16``, NAT64 ``64:ff9b::a.b.c.d`` and Teredo
``2001::/32`` (both its server and its client address).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

__all__ = ["AddressPolicy", "IPAddress", "embedded_ipv4"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: "This network" (RFC 791): 0.0.0.0 and everything next to it reaches this host.
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")
#: The well-known NAT64 prefix (RFC 6052): the last 32 bits are the IPv4 address.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (none for a plain IPv6 address)."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    value = int(ip)
    if ip in _NAT64 or (value >> 32 == 0 and value > 1):  # NAT64, or ::a.b.c.d (not ::, ::1)
        return (ipaddress.IPv4Address(value & 0xFFFF_FFFF),)
    return ()


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Link-local (cloud metadata lives there), multicast, unspecified and reserved
    addresses are always refused; loopback and private ones only when allowed."""

    allow_loopback: bool = True
    allow_private: bool = True

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be called (``"169.254.169.254 is link-local"``), or None."""
        if isinstance(ip, ipaddress.IPv6Address):
            for inner in embedded_ipv4(ip):
                why = self._refusal(inner)
                if why is not None:
                    return f"{ip} embeds {why}"
            if embedded_ipv4(ip):
                return None
        return self._refusal(ip)

    def _refusal(self, ip: IPAddress) -> str | None:
        if ip.is_unspecified:
            return f"{ip} is the unspecified address"
        if ip in _THIS_NETWORK:
            return f"{ip} is in 0.0.0.0/8, which means this host"
        if ip.is_link_local:
            return f"{ip} is link-local"
        if ip.is_multicast:
            return f"{ip} is multicast"
        if ip.is_loopback:  # before reserved: ::1 lies in the reserved ::/8
            if self.allow_loopback:
                return None
            return f"{ip} is loopback, which is not allowed here"
        if ip.is_reserved or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
            return f"{ip} is a reserved address"
        if not ip.is_global and not self.allow_private:
            return f"{ip} is a private address, which is not allowed here"
        return None
