"""Signed webhook URLs: ``sig`` = hex HMAC-SHA256 of the job id under the stack's secret."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import quote


def sign(job_id: str, secret: str) -> str:
    return hmac.new(secret.encode(), job_id.encode(), hashlib.sha256).hexdigest()


def verify(job_id: str, signature: str | None, secrets: Iterable[str]) -> bool:
    """Constant-time check of ``signature`` against every accepted secret (rotation)."""
    if not signature:
        return False
    ok = False
    for secret in secrets:
        # No early exit: the time taken does not tell which secret matched.
        ok |= hmac.compare_digest(sign(job_id, secret), signature.lower())
    return ok


def webhook_url(base_url: str, job_id: str, secret: str) -> str:
    return f"{base_url.rstrip('/')}/webhooks/pixazo/{quote(job_id, safe='')}?sig={sign(job_id, secret)}"
