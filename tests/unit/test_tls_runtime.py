"""TLS as the Lambda runtime's Python (3.13) verifies it: its default contexts set
``VERIFY_X509_STRICT``, so certificate chains that 3.11 accepted are refused. The gateway client and
the media fetch verify with such default contexts; these tests serve real chains on loopback and
show which shapes pass and which are refused (README, "TLS on Python 3.13").
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pixverse_jobs.errors import GatewayUnavailable
from pixverse_jobs.gateway import GatewayClient
from pixverse_jobs.netguard import MediaUrlPolicy, guarded_client

STRICT = sys.version_info >= (3, 13)


@dataclass(frozen=True)
class Chain:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_chain(directory: Path, *, strict_shape: bool) -> Chain:
    """A CA and a leaf for 127.0.0.1. ``strict_shape`` gives them what RFC 5280 asks and 3.13 checks:
    the CA's basicConstraints critical and keyUsage keyCertSign, the leaf's Authority Key Identifier.
    Without it: a CA with a non-critical basicConstraints and no keyUsage, a leaf without AKI, the
    shape of many older in-house CAs."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(_name("pixverse test CA"))
        .issuer_name(_name("pixverse test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=strict_shape)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
    )
    if strict_shape:
        ca_builder = ca_builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    ca_cert = ca_builder.sign(ca_key, hashes.SHA256())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_builder = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if strict_shape:
        leaf_builder = leaf_builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    leaf_cert = leaf_builder.sign(ca_key, hashes.SHA256())
    chain = Chain(directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key")
    chain.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain.cert_file.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    chain.key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return chain


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"request_id": "r1", "status": "PROCESSING"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["rfc5280-chain", "legacy-chain"])
def https_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Chain, bool]]:
    strict_shape: bool = request.param
    chain = make_chain(tmp_path, strict_shape=strict_shape)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain.cert_file, chain.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", chain, strict_shape
    server.shutdown()
    server.server_close()


def test_default_context_is_strict_on_the_runtime_python() -> None:
    # The runtime the functions run on is 3.13 (template.yaml); make test runs there when it can.
    flags = httpx.create_ssl_context().verify_flags
    assert bool(flags & ssl.VERIFY_X509_STRICT) is STRICT


def test_gateway_client_verifies_chain_as_the_runtime_does(https_server: tuple[str, Chain, bool]) -> None:
    # Given: the gateway client with the default context it builds, trusting the test CA
    url, chain, strict_shape = https_server
    context = httpx.create_ssl_context()
    context.load_verify_locations(cafile=str(chain.ca_file))
    gateway = GatewayClient(url, lambda: "key", client=httpx.Client(verify=context, timeout=5.0))

    # When / Then: an RFC 5280 chain is accepted everywhere; a legacy one is refused on 3.13
    if strict_shape or not STRICT:
        assert gateway.status("r1")["status"] == "PROCESSING"
    else:
        with pytest.raises(GatewayUnavailable) as refused:
            gateway.status("r1")
        assert isinstance(refused.value.__cause__, httpx.ConnectError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.__cause__)
    gateway.close()


def test_media_fetch_context_verifies_chain_as_the_runtime_does(https_server: tuple[str, Chain, bool]) -> None:
    # Given: the TLS context the copier's guarded client verifies media hosts with (its address
    # policy refuses loopback, so the handshake is made with the context directly)
    url, chain, strict_shape = https_server
    client = guarded_client(MediaUrlPolicy(["*.r2.dev"]), httpx.Timeout(5.0))
    context: ssl.SSLContext = client._transport._pool._ssl_context  # type: ignore[attr-defined]
    context.load_verify_locations(cafile=str(chain.ca_file))
    port = int(url.rsplit(":", 1)[1])

    # When: a TLS handshake with the server
    import socket

    def handshake() -> None:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass

    # Then: accepted or refused as the gateway client's is
    if strict_shape or not STRICT:
        handshake()
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake()
    client.close()
