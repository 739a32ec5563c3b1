"""Which release URLs the registry will call: the release-URL policy."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from pageholder.service.core.errors import InvalidRequest

__all__ = ["validate_release_url"]

_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f]")


def validate_release_url(
    url: str, *, allow_loopback: bool = True, allow_private: bool = True
) -> str:
    """Check a holder's ``release_url``; return it unchanged or raise ``InvalidRequest``.

    http/https only, a host required, no userinfo. An IP-literal host must not be
    link-local (cloud metadata lives there), multicast, unspecified or reserved;
    loopback and private addresses only when allowed. Host names are not resolved.
    """

    def refuse(detail: str) -> InvalidRequest:
        return InvalidRequest(f"release_url {detail}", field="release_url")

    if _FORBIDDEN_CHARS.search(url):
        raise refuse("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise refuse(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise refuse(f"must use http or https (scheme: {shown})")
    if "@" in parts.netloc:
        raise refuse("must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise refuse("must name a host")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A name whose last label is numeric is no DNS name but an IP in another
        # spelling (2130706433, 0x7f.1, 127.1): refuse what we cannot check.
        if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
            raise refuse(f"host {host!r} is not a canonical IP address") from None
        return url
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        raise refuse(f"host {ip} is the unspecified address")
    if ip.is_link_local:
        raise refuse(f"host {ip} is link-local")
    if ip.is_multicast:
        raise refuse(f"host {ip} is multicast")
    if ip.is_loopback:  # before reserved: ::1 lies in the reserved ::/8
        if not allow_loopback:
            raise refuse(f"host {ip} is loopback, which is not allowed here")
        return url
    if ip.is_reserved:
        raise refuse(f"host {ip} is a reserved address")
    if not ip.is_global and not allow_private:
        raise refuse(f"host {ip} is a private address, which is not allowed here")
    return url
