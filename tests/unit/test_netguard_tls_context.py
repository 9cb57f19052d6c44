"""Cold start: the copier's guarded HTTP client loads the CA bundle once (bench/cold_start.py found
a second TLS context, ~14 ms of every media-copy cold start), and both pools share it."""

from __future__ import annotations

import ssl

import httpx
import pytest
from pixverse_jobs.netguard import MediaUrlPolicy, guarded_client


def test_guarded_client_builds_one_tls_context_shared_by_its_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: every CA bundle load counted
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)

    # When: the copier's client is created
    client = guarded_client(MediaUrlPolicy(["*.r2.dev"]), httpx.Timeout(5.0))

    # Then: one bundle load, and the guarded pool verifies with that context
    assert len(loads) == 1
    transport = client._transport
    assert transport._pool._ssl_context is loads[0]  # type: ignore[attr-defined]
    client.close()
