"""Signed webhook URLs: ``sig`` = hex HMAC-SHA256 of the job id under the stack's secret.

The gateway's callbacks carry no signature of their own, so the URL is the credential: only the
gateway (which received it with the submit) can call a job's URL with a valid ``sig``."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import quote

# A hex SHA-256 digest. Anything else is refused before any secret is read or compared.
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

DEFAULT_REFRESH_AFTER_SECONDS = 30.0


def sign(job_id: str, secret: str) -> str:
    """The hex HMAC-SHA256 of ``job_id`` under ``secret``."""
    return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()


def _normalized(signature: str | None) -> bytes | None:
    if not signature:
        return None
    lowered = signature.lower()
    # fullmatch on ASCII hex first: compare_digest raises TypeError on non-ASCII str.
    return lowered.encode() if _SIGNATURE.fullmatch(lowered) else None


def _matches(job_id: str, signature: bytes, secret: str) -> bool:
    return hmac.compare_digest(sign(job_id, secret).encode(), signature)


def verify(job_id: str, signature: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of ``signature`` against every accepted secret (rotation)."""
    normalized = _normalized(signature)
    if normalized is None:
        return False
    ok = False
    for secret in secrets:
        # No early exit: the time taken does not tell which secret matched.
        ok |= _matches(job_id, normalized, secret)
    return ok


def webhook_url(base_url: str, job_id: str, secret: str) -> str:
    """The callback URL given to the gateway for ``job_id``."""
    return f"{base_url.rstrip('/')}/webhooks/pixazo/{quote(job_id, safe='')}?sig={sign(job_id, secret)}"


class SigningSecrets(Protocol):
    """Where the signing key comes from (``secrets.SecretReader``): cached reads of the current
    version and of the previous one, which may not exist."""

    def get(self, secret_id: str, *, force_fetch: bool = False) -> str: ...

    def get_previous(self, secret_id: str, *, force_fetch: bool = False) -> str | None: ...


class SignatureVerifier:
    """Checks a callback URL's ``sig`` against the signing secret, accepting both the current
    and the previous version so URLs handed out before a rotation keep working.

    Cost per call, once warm: a valid current-key signature reads only the cache. The previous
    version is fetched only when the current one does not verify, and then cached (its absence
    too). When neither verifies, both are re-read at most once per ``refresh_after`` seconds:
    after a rotation a warm container's cached "current" may be the old key while new URLs are
    signed with the new one, and waiting out the cache would refuse real callbacks for minutes;
    the interval bounds what a stream of forged requests can cost."""

    def __init__(
        self,
        secrets: SigningSecrets,
        secret_id: str,
        *,
        refresh_after: float = DEFAULT_REFRESH_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._refresh_after = refresh_after
        self._clock = clock
        # Nothing cached can be older than this object.
        self._refreshed_at = clock()

    def verify(self, job_id: str, signature: str | None) -> bool:
        """Whether ``signature`` is the job's signature under the current or previous secret."""
        normalized = _normalized(signature)
        if normalized is None:
            return False
        if _matches(job_id, normalized, self._secrets.get(self._secret_id)):
            return True
        previous = self._secrets.get_previous(self._secret_id)
        if previous is not None and _matches(job_id, normalized, previous):
            return True
        now = self._clock()
        if now - self._refreshed_at < self._refresh_after:
            return False
        self._refreshed_at = now
        # Re-read both, even if the new current matches: the cached "previous" (or its absence)
        # is as stale as the current was, and URLs issued before the rotation are still out.
        current = self._secrets.get(self._secret_id, force_fetch=True)
        previous = self._secrets.get_previous(self._secret_id, force_fetch=True)
        return _matches(job_id, normalized, current) or (
            previous is not None and _matches(job_id, normalized, previous)
        )
