"""Where the media copier may connect: the SSRF rules for media URLs and their redirects.

A media URL comes from a gateway callback and redirects come from whoever serves it, so every
hop is checked before anything is sent:

1. the URL is ``https`` (plain ``http`` only for a loopback host, which only the local stack
   allows) and carries no credentials;
2. its host (and port) matches ``ALLOWED_MEDIA_HOSTS``: ``host``, ``*.domain`` (subdomains only,
   never an IP literal) or either with ``:port``;
3. every address the host resolves to is public unicast: not private, loopback, link-local
   (169.254.0.0/16, where the instance metadata service lives), multicast, reserved,
   unspecified, shared (100.64.0.0/10), IPv6 unique-local or site-local, nor an IPv6 form that
   embeds such an IPv4 address (mapped, 6to4, NAT64). A host named by an exact, non-wildcard
   entry is exempt from this rule: the operator named it on purpose (the local stack allows
   ``127.0.0.1:<port>`` that way).

Rule 3 is enforced twice: before the request (a clear error, whatever transport is used) and
at connect time by :class:`GuardedNetworkBackend`, which resolves the name, checks every
address and connects to a checked address itself. The connection therefore goes to the
address that was checked, so a DNS answer that changes between the check and the connect (DNS
rebinding) cannot reach a refused address; TLS still verifies the certificate for, and sends
SNI and Host of, the URL's host name, because httpcore takes those from the URL, not from the
address the socket connected to. The media client ignores proxy environment variables: behind
a proxy the guard would check the proxy, not the origin.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpcore
import httpx

from pixverse_jobs.errors import ConfigurationError, MediaAddressRefused, MediaDownloadInterrupted

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses a connection to them would use, as strings.
Resolver = Callable[[str, int], Sequence[str]]

DEFAULT_PORTS = {"https": 443, "http": 80}
_SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``socket.getaddrinfo`` gives for a TCP connection to ``host:port``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


# ------------------------------------------------------------------ host patterns
@dataclass(frozen=True)
class HostPattern:
    """One ``ALLOWED_MEDIA_HOSTS`` entry: ``host``, ``*.domain``, either with ``:port``."""

    host: str  # lower case; for a wildcard, the domain after "*."
    port: int | None
    wildcard: bool

    @classmethod
    def parse(cls, raw: str) -> HostPattern:
        text = raw.strip().lower()
        host, port_text = text, ""
        if text.startswith("["):  # [v6] or [v6]:port
            inside, _, rest = text[1:].partition("]")
            host, port_text = inside, rest.removeprefix(":")
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        if not host or (port_text and not port_text.isdigit()):
            raise ConfigurationError(f"ALLOWED_MEDIA_HOSTS entry {raw!r} is not host, *.domain or either with :port")
        wildcard = host.startswith("*.")
        if wildcard:
            host = host[2:]
        if not host or "*" in host:
            raise ConfigurationError(f"ALLOWED_MEDIA_HOSTS entry {raw!r}: '*.' is only allowed as a prefix")
        return cls(host=host, port=int(port_text) if port_text else None, wildcard=wildcard)

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            # A wildcard names DNS domains; letting "*.0.0.1" match 127.0.0.1 would be an accident.
            return not _is_ip_literal(host) and host.endswith("." + self.host)
        return host == self.host


def parse_patterns(patterns: Iterable[str]) -> tuple[HostPattern, ...]:
    return tuple(HostPattern.parse(p) for p in patterns if p.strip())


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether the URL's host (and port) matches one of ``patterns`` (``ALLOWED_MEDIA_HOSTS``)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    host, port = _host_port(parsed)
    return any(p.matches(host, port) for p in parse_patterns(patterns))


def _host_port(url: httpx.URL) -> tuple[str, int | None]:
    # raw_host is what httpcore connects to (IDNA-encoded), so it is what must be matched.
    host = url.raw_host.decode("ascii").lower()
    return host, url.port or DEFAULT_PORTS.get(url.scheme)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ addresses
def refusal_reason(address: IPAddress) -> str | None:
    """Why the copier must not connect to ``address`` (e.g. ``"link-local"``), or None when it
    is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return f"{inner} (inside an IPv6 address)" if inner else None
        if address.is_site_local:
            return "site-local"
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "unspecified"),
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE, "shared (CGNAT)"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-global"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


class MediaUrlPolicy:
    """The SSRF rules above for one ``ALLOWED_MEDIA_HOSTS`` list."""

    def __init__(self, allowed_hosts: Iterable[str], *, resolver: Resolver | None = None) -> None:
        self._patterns = parse_patterns(allowed_hosts)
        self._resolve = resolver or system_resolver

    def check_url(self, url: str | httpx.URL, *, resolve: bool = True) -> httpx.URL:
        """The parsed URL if it may be fetched; MediaAddressRefused naming the rule otherwise.
        Checks rules 1 and 2 and, with ``resolve``, 3 (a DNS lookup); nothing is sent."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise MediaAddressRefused("media URL is not a valid URL") from exc
        if parsed.scheme not in DEFAULT_PORTS or not parsed.raw_host:
            raise MediaAddressRefused(f"media URL is not an http(s) URL (scheme {parsed.scheme!r})")
        host, port = _host_port(parsed)
        where = f"{host}:{port}"
        if parsed.userinfo:
            raise MediaAddressRefused(f"media URL for {where} carries credentials")
        if parsed.scheme == "http" and not is_loopback_host(host):
            raise MediaAddressRefused(f"media URL for {where} must be https")
        if not any(p.matches(host, port) for p in self._patterns):
            raise MediaAddressRefused(f"media host {where} is not in ALLOWED_MEDIA_HOSTS")
        if resolve:
            self.addresses_for(host, port or 0)
        return parsed

    def addresses_for(self, host: str, port: int) -> list[str]:
        """The addresses a connection to ``host:port`` may use (rule 3): the host itself when an
        exact entry names it, else its resolved addresses, all of them public."""
        host = host.lower()
        if any(not p.wildcard and p.matches(host, port) for p in self._patterns):
            return [host]
        try:
            addresses = list(self._resolve(host, port))
        except OSError as exc:
            # DNS failures are usually passing: the download's retry policy has another go.
            raise MediaDownloadInterrupted(f"media host {host} could not be resolved: {exc}") from exc
        if not addresses:
            raise MediaDownloadInterrupted(f"media host {host} resolved to no address")
        for text in addresses:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError as exc:
                raise MediaAddressRefused(f"media host {host} resolved to an unreadable address {text!r}") from exc
            reason = refusal_reason(address)
            if reason:
                # One refused address refuses the host: a resolver that mixes a public and a
                # private answer is exactly the trick this rule exists for.
                raise MediaAddressRefused(f"media host {host} resolves to a {reason} address ({address}); refused")
        return addresses


# ------------------------------------------------------------------ transport
class GuardedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, but every TCP connect goes to an address the policy
    checked at that moment (see the module docstring)."""

    def __init__(self, policy: MediaUrlPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.addresses_for(host, port)
        options = list(socket_options or [])
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # addresses_for never returns an empty list
        raise failure

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` over :class:`GuardedNetworkBackend`, never through a proxy."""

    def __init__(self, policy: MediaUrlPolicy, *, limits: httpx.Limits | None = None) -> None:
        limits = limits or httpx.Limits(max_connections=4, max_keepalive_connections=2)
        # One TLS context for both pools: loading the CA bundle costs ~14 ms of every cold start.
        ssl_context = httpx.create_ssl_context(trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # HTTPTransport has no hook for a network backend; its pool is replaced by an equal one
        # (same TLS context and limits) that connects through the guard.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy),
        )


def guarded_client(policy: MediaUrlPolicy, timeout: httpx.Timeout) -> httpx.Client:
    """The copier's HTTP client: guarded connects, no automatic redirects, no proxies."""
    return httpx.Client(transport=GuardedTransport(policy), timeout=timeout, follow_redirects=False, trust_env=False)
