"""Outgoing webhooks: Standard Webhooks signing and the guard against server-side request forgery.

Signing (https://www.standardwebhooks.com): headers `webhook-id` (the notification id, the same on
every retry, for the receiver to deduplicate), `webhook-timestamp` (seconds, per attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the base64-decoded part
of a `whsec_...` secret as the key.

Targets: a webhook may only reach public addresses. Private, loopback, link-local (cloud metadata),
shared, reserved and multicast addresses are refused unless the host name or the address is in
WEBHOOK_ALLOWED_HOSTS (host names, addresses or CIDRs). An IPv6 address that embeds an IPv4 one
(IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 64:ff9b:1::/48,
6to4 2002::/16, Teredo 2001::/32) is public only if every embedded IPv4 address is: a gateway
would otherwise carry `[64:ff9b::a9fe:a9fe]` to 169.254.169.254. Only the IPv4-mapped form is
the same address as its IPv4 one (a dual-stack socket reports IPv4 peers so), so only it is
matched against IPv4 entries of the allowlist. The check is made on the resolved
addresses before connecting and again on the socket's actual peer after connecting, so a DNS
answer that changes in between (rebinding) cannot slip through; proxies from the environment are
ignored and redirects are not followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from notifications.models import WEBHOOK_SECRET_PREFIX

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenTarget(Exception):
    """A webhook URL that points at a private or otherwise non-public address."""


# --- signing --------------------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


# --- targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowlist:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, entries: list[str]) -> Allowlist:
        hosts, networks = set(), []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return _is_public(address) and all(_is_public(v4) for v4 in embedded_ipv4(address))


_NAT64_NETWORKS = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and would reach through a gateway)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or any(address in network for network in _NAT64_NETWORKS):
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client): the client is the host reached
    return found


def allowlist() -> Allowlist:
    return Allowlist.parse(list(settings.WEBHOOK_ALLOWED_HOSTS))


def check_url_form(url: str) -> None:
    """Only the URL's form: http(s) with a host (no name resolution)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise ForbiddenTarget(f"{url!r} has an invalid port") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ForbiddenTarget(f"{url!r} is not an http(s) URL with a host")


def check_url(url: str) -> tuple[str, int]:
    """The URL's host and port if it is an http(s) URL whose addresses may be reached."""
    check_url_form(url)
    parts = urlsplit(url)
    assert parts.hostname is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    rules = allowlist()
    if rules.allows_host(parts.hostname):
        return parts.hostname, port
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ForbiddenTarget(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not rules.allows_address(address):
            raise ForbiddenTarget(f"{parts.hostname} resolves to {address}, which is not public")
    return parts.hostname, port


def _check_peer(sock: socket.socket, host: str) -> None:
    rules = allowlist()
    if rules.allows_host(host):
        return
    address = ipaddress.ip_address(sock.getpeername()[0].split("%", 1)[0])
    if not rules.allows_address(address):
        sock.close()
        raise ForbiddenTarget(f"{host} connected to {address}, which is not public")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


@cache
def webhook_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: the peer checked is the target
    adapter = _GuardedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
