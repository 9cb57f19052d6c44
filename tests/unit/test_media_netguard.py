"""The SSRF rules for media URLs: host patterns, address classes, and the connect-time guard
(a real socket server on loopback shows that a refused address receives no connection)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable

import httpcore
import pytest
from pixverse_jobs.errors import ConfigurationError, MediaAddressRefused, TransientDeliveryError
from pixverse_jobs.media import MediaCopier, host_allowed
from pixverse_jobs.netguard import GuardedNetworkBackend, HostPattern, MediaUrlPolicy, Resolver, refusal_reason
from traps import Trap


@pytest.mark.parametrize(
    ("url", "patterns", "allowed"),
    [
        ("https://pub-1.r2.dev/v1/a.mp4", ["*.r2.dev"], True),
        ("https://r2.dev/a.mp4", ["*.r2.dev"], False),
        ("https://evil.com/a.mp4", ["*.r2.dev"], False),
        ("https://pub-1.r2.dev.evil.com/a.mp4", ["*.r2.dev"], False),
        ("https://evilr2.dev/a.mp4", ["*.r2.dev"], False),
        ("http://127.0.0.1:8080/m/0.mp4", ["127.0.0.1:8080"], True),
        ("http://127.0.0.1:9090/m/0.mp4", ["127.0.0.1:8080"], False),
        ("https://CDN.Example.com/a", ["cdn.example.com"], True),
        ("https://cdn.example.com/a", ["cdn.example.com:443"], True),
        ("https://cdn.example.com:8443/a", ["cdn.example.com:443"], False),
        ("http://127.0.0.1/x", ["*.0.0.1"], False),  # a wildcard never matches an IP literal
        ("http://[::1]:8080/x", ["[::1]:8080"], True),
        ("https://evil.com\\@pub.r2.dev/", ["*.r2.dev"], True),  # parsed as httpx (the sender) parses it
    ],
)
def test_host_allowed_matches_hosts_wildcards_and_ports(url: str, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(url, patterns) is allowed


@pytest.mark.parametrize("entry", ["*.", "cdn.example.com:https", "a.*.example.com", ""])
def test_bad_allowed_hosts_entry_fails_naming_the_setting(entry: str) -> None:
    with pytest.raises(ConfigurationError, match="ALLOWED_MEDIA_HOSTS"):
        HostPattern.parse(entry or ":")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a value under test
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("192.0.2.10", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "private"),  # the instance metadata service over IPv6
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("::ffff:10.0.0.1", "private (inside an IPv6 address)"),
        ("::ffff:169.254.169.254", "link-local (inside an IPv6 address)"),
        ("2002:a00:1::", "private (inside an IPv6 address)"),  # 6to4 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local (inside an IPv6 address)"),  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_naming_why(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "104.16.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def _resolver(answers: dict[str, list[list[str]]], calls: list[str] | None = None) -> Resolver:
    """Each call for a host gives its next answer (the last one repeats): DNS that changes."""

    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        queue = answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


def test_wildcard_host_resolving_to_a_private_address_is_refused() -> None:
    policy = MediaUrlPolicy(["*.r2.dev"], resolver=_resolver({"int.r2.dev": [["10.1.2.3"]]}))
    with pytest.raises(MediaAddressRefused, match=r"int.r2.dev resolves to a private address \(10.1.2.3\)"):
        policy.check_url("https://int.r2.dev/a.mp4")


def test_host_with_one_private_answer_among_public_ones_is_refused() -> None:
    answers = {"pub.r2.dev": [["104.16.0.1", "169.254.169.254"]]}
    policy = MediaUrlPolicy(["*.r2.dev"], resolver=_resolver(answers))
    with pytest.raises(MediaAddressRefused, match="link-local"):
        policy.check_url("https://pub.r2.dev/a.mp4")


def test_exact_entry_is_exempt_from_the_address_rule_without_resolving() -> None:
    calls: list[str] = []
    policy = MediaUrlPolicy(["127.0.0.1:8080", "media.internal"], resolver=_resolver({}, calls))
    policy.check_url("http://127.0.0.1:8080/media/0.mp4")
    policy.check_url("https://media.internal/a.mp4")
    assert calls == []


def test_unresolvable_host_is_a_transient_failure() -> None:
    policy = MediaUrlPolicy(["*.r2.dev"], resolver=_resolver({}))
    with pytest.raises(TransientDeliveryError, match="could not be resolved"):
        policy.check_url("https://gone.r2.dev/a.mp4")


# ------------------------------------------------------------------ connect-time guard


def test_dns_rebinding_to_loopback_is_refused_at_connect_time_with_no_connection(trap: Trap) -> None:
    # Given DNS that answers a public address for the check and loopback for the connect
    answers = {"media.r2.dev": [["104.16.0.1"], ["127.0.0.1"]]}
    made = MediaCopier(["*.r2.dev"], s3_client=object(), resolver=_resolver(answers))

    # When the copier (its real, guarded HTTP client) fetches from that host
    with pytest.raises(MediaAddressRefused, match="loopback"):
        made.copy(f"https://media.r2.dev:{trap.port}/v.mp4", bucket="b", key="k", media_type="video/mp4", metadata={})

    # Then no connection ever reached the loopback listener
    assert trap.connections == 0


def test_exempt_host_connects_through_the_guard(trap: Trap) -> None:
    backend = GuardedNetworkBackend(MediaUrlPolicy([f"127.0.0.1:{trap.port}"]))
    backend.connect_tcp("127.0.0.1", trap.port, timeout=2).close()
    deadline = threading.Event()
    for _ in range(20):
        if trap.connections:
            break
        deadline.wait(0.05)
    assert trap.connections == 1


class RecordingBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.addresses: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.addresses.append(host)
        raise httpcore.ConnectError("recorded, not connected")


def test_connection_goes_to_the_checked_address_not_a_fresh_lookup() -> None:
    inner = RecordingBackend()
    answers = {"media.r2.dev": [["104.16.0.1", "104.16.0.2"]]}
    backend = GuardedNetworkBackend(MediaUrlPolicy(["*.r2.dev"], resolver=_resolver(answers)), inner=inner)

    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("media.r2.dev", 443)

    # TLS SNI and Host still name media.r2.dev: httpcore takes them from the URL, not the socket.
    assert inner.addresses == ["104.16.0.1", "104.16.0.2"]
