"""Secrets Manager reads, cached per container.

Plain GetSecretValue calls on the function's own client, with a small cache: the Powertools
Parameters utility did the same for 9 ms of every cold start (its import), and keyed its cache
by secret name only, so the current and previous versions needed a provider each."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pixverse_jobs.errors import ConfigurationError, SecretReadFailed

DEFAULT_MAX_AGE_SECONDS = 300
CURRENT_STAGE = "AWSCURRENT"
PREVIOUS_STAGE = "AWSPREVIOUS"


class SecretReader:
    """String secrets by name or ARN, each version cached ``max_age`` seconds.

    The previous version (``AWSPREVIOUS``, for key rotation) is cached apart from the current
    one. A secret that was never rotated has no previous version; that answer is cached too, so
    a stream of forged callbacks costs no extra calls."""

    def __init__(
        self,
        client: Any = None,
        *,
        max_age: int = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("secretsmanager")
        self.client = client
        self._max_age = max_age
        self._clock = clock
        # (secret id, version stage) -> (value or None for "no such version", expiry)
        self._cache: dict[tuple[str, str], tuple[str | None, float]] = {}

    def get(self, secret_id: str, *, force_fetch: bool = False) -> str:
        """The secret's current string value (cached ``max_age`` seconds)."""
        value = self._read(secret_id, CURRENT_STAGE, force_fetch=force_fetch)
        if not value:
            # Never include the value: only the secret's name.
            raise ConfigurationError(f"secret {secret_id} has no string value")
        return value

    def get_previous(self, secret_id: str, *, force_fetch: bool = False) -> str | None:
        """The value the secret had before its last rotation, or None if it was never rotated
        (both answers cached ``max_age`` seconds). Other errors propagate: a callback signed
        with the previous key must be retried, not refused, while Secrets Manager is failing."""
        return self._read(secret_id, PREVIOUS_STAGE, force_fetch=force_fetch) or None

    def _read(self, secret_id: str, stage: str, *, force_fetch: bool) -> str | None:
        key = (secret_id, stage)
        cached = self._cache.get(key)
        if cached is not None and not force_fetch and cached[1] > self._clock():
            return cached[0]
        try:
            answer = self.client.get_secret_value(SecretId=secret_id, VersionStage=stage)
            value = answer.get("SecretString")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if stage == CURRENT_STAGE or code != "ResourceNotFoundException":
                raise SecretReadFailed(f"cannot read secret {secret_id} ({stage}): {code}") from exc
            value = None  # never rotated: no previous version
        except BotoCoreError as exc:
            raise SecretReadFailed(f"cannot read secret {secret_id} ({stage}): {type(exc).__name__}") from exc
        value = value if isinstance(value, str) else None
        self._cache[key] = (value, self._clock() + self._max_age)
        return value
