"""Outbound connections to hosts a user (or a provider's answer) names, made safe against SSRF.

A user-given endpoint could otherwise make the server reach its own network: loopback, the
VPC, the cloud's metadata service (169.254.169.254, fd00:ec2::254), the Lambda runtime API.
Every connection made through `guard_boto_client` / `guard_session` resolves its host once,
refuses the connection unless every address is public (or the operator allow-listed it in
`outbound_allow`), and connects to exactly the address it checked — a DNS answer that changes
afterwards (rebinding) cannot redirect it. `check_url` runs the same check before any request,
so a bad endpoint is refused with a clear message and nothing is sent.
"""
from __future__ import annotations

import functools
import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..settings import get_settings
from .base import BackendError

if TYPE_CHECKING:
    import requests

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Not "global" by the IANA registries already, named anyway so the rule is plain to read.
_METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::/64"),
             ipaddress.ip_network("100.100.100.200/32"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(BackendError):
    """The host is one this server must not reach on a user's behalf."""


@dataclass(frozen=True)
class _Rule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    host: str | None
    port: int | None

    def matches(self, host: str, address: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        return self.host == host.lower().rstrip(".")


def _parse_rule(entry: str) -> _Rule:
    host, port = entry, None
    if entry.startswith("["):                           # [v6]:port or [v6/len]
        host, _, rest = entry[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif entry.count(":") == 1:                         # host:port, v4:port, v4/len:port
        host, _, text = entry.partition(":")
        port = int(text)
    try:
        return _Rule(ipaddress.ip_network(host, strict=False), None, port)
    except ValueError:
        return _Rule(None, host.lower().rstrip("."), port)


@functools.cache
def _rules(text: str) -> tuple[_Rule, ...]:
    rules = []
    for entry in (e.strip() for e in text.split(",")):
        if entry:
            try:
                rules.append(_parse_rule(entry))
            except ValueError:
                raise ValueError(f"outbound_allow: {entry!r} is not a host, address or CIDR "
                                 f"with an optional :port") from None
    return tuple(rules)


def _allowed() -> tuple[_Rule, ...]:
    """outbound_allow, and the provider URLs the operator set (provider_url_overrides, e.g. a
    provider's API on the LAN, or the tests' fakes on loopback): both are the operator's word."""
    settings = get_settings()
    return _rules(settings.outbound_allow) + _override_rules(settings.provider_url_overrides)


@functools.cache
def _override_rules(raw: str) -> tuple[_Rule, ...]:
    # Only the URLs matter here; the provider clients check the setting's keys and say when it is
    # malformed (reading it through them would make oauth -> http -> outbound -> oauth a cycle).
    try:
        overrides = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return ()
    if not isinstance(overrides, dict):
        return ()
    urls = [url for url in overrides.values() if isinstance(url, str)]
    rules = []
    for url in urls:
        parts = urlsplit(url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            rules.append(_parse_rule(f"[{parts.hostname}]:{port}"))
    return tuple(rules)


def _why_blocked(address: IPAddress) -> str | None:
    """What kind of address this is, if the server must not reach it for a user."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried inside (mapped, 6to4's 2002::/16, NAT64) is judged as
        # itself: a relay or the host's own stack may deliver to it.
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            return _why_blocked(embedded)
    if any(address in network for network in _METADATA):
        return "a cloud metadata address"
    for kind in ("loopback", "link_local", "multicast", "private", "reserved",
                 "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def resolve(host: str, port: int) -> str:
    """The one address to connect to for host:port, checked; OutboundRefused if any address
    the name resolves to is off limits (a name that is partly private is refused whole)."""
    name = (host or "").strip("[]")
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise BackendError(f"could not resolve the host {name!r}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0])
                                       for info in found))
    if not addresses:
        raise BackendError(f"could not resolve the host {name!r}")
    rules = _allowed()
    for address in addresses:
        if any(rule.matches(name, address, port) for rule in rules):
            continue
        why = _why_blocked(address)
        if why is not None:
            shown = name if str(address) == name else f"{name} ({address})"
            raise OutboundRefused(f"refusing to connect to {shown}: {why}, which this server "
                                  f"does not reach for users (the operator can allow it with "
                                  f"CLOUDSTRYPE_OUTBOUND_ALLOW)")
    return str(addresses[0])


def check_url(url: str) -> str:
    """Check the host of an http(s) URL before anything is sent; its checked address."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BackendError(f"{url!r} has an invalid port") from None
    return resolve(parts.hostname or "", port)


class _Pinned:
    """Resolves and checks the host once per connection and connects to that address; TLS
    still verifies the certificate against the host name."""
    _pinned_address: str | None = None

    def _new_conn(self):
        if self._pinned_address is None:
            self._pinned_address = resolve(self.host, self.port)
        self._dns_host = self._pinned_address
        return super()._new_conn()


# The connection classes are built on first use: urllib3, requests and botocore cost a cold start
# tens of milliseconds, and most calls of a function reach no user-named host.
@functools.cache
def _session_adapter() -> type:
    """requests' adapter whose pools connect only to checked addresses."""
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    pools = _pinned_pools({"http": (HTTPConnectionPool, HTTPConnection),
                           "https": (HTTPSConnectionPool, HTTPSConnection)})

    class _GuardedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(pools)

    return _GuardedAdapter


@functools.cache
def _boto_pools() -> dict[str, type]:
    """botocore's pool classes by scheme, connecting only to checked addresses."""
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    return _pinned_pools({"http": (AWSHTTPConnectionPool, AWSHTTPConnection),
                          "https": (AWSHTTPSConnectionPool, AWSHTTPSConnection)})


def _pinned_pools(classes: dict[str, tuple[type, type]]) -> dict[str, type]:
    """Per scheme, a subclass of its (pool, connection) classes whose connections go only to
    checked addresses."""
    pools = {}
    for scheme, (pool, connection) in classes.items():
        pinned = type(f"_Pinned{connection.__name__}", (_Pinned, connection), {})
        pools[scheme] = type(f"_Pinned{pool.__name__}", (pool,), {"ConnectionCls": pinned})
    return pools


def guard_session(session: requests.Session) -> requests.Session:
    """Every request of this session (redirects too) goes through the check."""
    adapter = _session_adapter()
    if not isinstance(session.get_adapter("https://x/"), adapter):
        session.mount("https://", adapter())
        session.mount("http://", adapter())
    return session


def guard_boto_client(client):
    """Every connection of this botocore client goes through the check."""
    # botocore's URLLib3Session shares this mapping with its pool managers.
    client._endpoint.http_session._pool_classes_by_scheme.update(_boto_pools())
    return client
