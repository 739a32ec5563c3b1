"""Which release URLs the registry will call: the release-URL policy.

A URL's host is normalised the way it will be called (IDNA with UTS #46 mapping, so
``169．254．169．254`` with fullwidth dots *is* 169.254.169.254) before it is checked.
An IP-literal host is judged here by ``AddressPolicy``; a host name is judged by every
address it resolves to each time the webhook client connects (``transport``), since a
name can be re-pointed at any time after it was registered.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

from pageholder.service.core.errors import InvalidRequest
from pageholder.service.webhooks.addresses import AddressPolicy

__all__ = ["normalize_host", "validate_release_url"]

_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f]")
_HOST_NAME = re.compile(r"^[a-z0-9_.-]+$")


def normalize_host(host: str) -> str:
    """The host as it will be looked up: lower case ASCII, IDNA-encoded with UTS #46
    mapping (fullwidth and ideographic dots and digits become ASCII ones). An IPv6
    literal is returned as it is. Raises ``ValueError`` for a host no name can match."""
    if ":" in host:
        return host
    if host.isascii():
        ascii_host = host.lower()
    else:
        try:
            ascii_host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"host {host!r} is not a valid domain name: {exc}") from None
    if not _HOST_NAME.match(ascii_host):
        raise ValueError(f"host {host!r} is not a valid domain name")
    return ascii_host


def validate_release_url(
    url: str, *, allow_loopback: bool = True, allow_private: bool = True
) -> str:
    """Check a holder's ``release_url``; return it (its host normalised, see
    ``normalize_host``) or raise ``InvalidRequest``.

    http/https only, a host required, no userinfo. An IP-literal host must not be
    link-local (cloud metadata lives there), multicast, unspecified or reserved, nor
    carry such an IPv4 address (``AddressPolicy``); loopback and private addresses only
    when allowed. Host names are not resolved here: the webhook client checks what they
    resolve to at every connection.
    """

    def refuse(detail: str) -> InvalidRequest:
        return InvalidRequest(f"release_url {detail}", field="release_url")

    if _FORBIDDEN_CHARS.search(url):
        raise refuse("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise refuse(f"must use http or https (scheme: {shown})")
    if "@" in parts.netloc:
        raise refuse("must not contain credentials (user:password@)")
    raw_host = parts.hostname
    if not raw_host:
        raise refuse("must name a host")
    try:
        host = normalize_host(raw_host)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        # A name whose last label is numeric is no DNS name but an IP in another
        # spelling (2130706433, 0x7f.1, 127.1): refuse what we cannot check.
        if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
            raise refuse(f"host {host!r} is not a canonical IP address") from None
        return url if host == raw_host else _with_host(parts, host, port)
    why = AddressPolicy(allow_loopback, allow_private).refusal(ip)
    if why is not None:
        raise refuse(f"host {why}")
    return url if host == raw_host else _with_host(parts, host, port)


def _with_host(parts: SplitResult, host: str, port: int | None) -> str:
    """``parts`` with its host replaced by the normalised one (no userinfo here)."""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))
