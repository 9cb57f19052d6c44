"""Secrets Manager reads through Powertools Parameters, cached per container."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from pixverse_jobs.errors import ConfigurationError

DEFAULT_MAX_AGE_SECONDS = 300
PREVIOUS_STAGE = "AWSPREVIOUS"


def _is_not_found(exc: GetParameterError) -> bool:
    # Powertools wraps every client error in GetParameterError (raised inside the except block,
    # so the ClientError is its __context__).
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ClientError):
        return cause.response.get("Error", {}).get("Code") == "ResourceNotFoundException"
    return "ResourceNotFoundException" in str(exc)


class SecretReader:
    """String secrets by name or ARN, each cached ``max_age`` seconds.

    The previous version (``AWSPREVIOUS``, for key rotation) has its own provider: Powertools
    keys its cache by secret name only, not by version stage, so one provider would hand the
    current value back for the previous one. A secret that was never rotated has no previous
    version; that answer is cached too, so a stream of forged callbacks costs no extra calls."""

    def __init__(
        self,
        client: Any = None,
        *,
        max_age: int = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = SecretsProvider(boto3_client=client) if client else SecretsProvider()
        self._previous_provider: SecretsProvider | None = None
        self._max_age = max_age
        self._clock = clock
        self._no_previous_until: dict[str, float] = {}

    def get(self, secret_id: str, *, force_fetch: bool = False) -> str:
        """The secret's current string value (cached ``max_age`` seconds)."""
        value = self._provider.get(secret_id, max_age=self._max_age, force_fetch=force_fetch)
        if not isinstance(value, str) or not value:
            # Never include the value: only the secret's name.
            raise ConfigurationError(f"secret {secret_id} has no string value")
        return value

    def get_previous(self, secret_id: str, *, force_fetch: bool = False) -> str | None:
        """The value the secret had before its last rotation, or None if it was never rotated
        (both answers cached ``max_age`` seconds). Other errors propagate: a callback signed
        with the previous key must be retried, not refused, while Secrets Manager is failing."""
        if not force_fetch and self._no_previous_until.get(secret_id, 0.0) > self._clock():
            return None
        if self._previous_provider is None:
            # Created on first use, on the same client: most containers never need it.
            self._previous_provider = SecretsProvider(boto3_client=self._provider.client)
        try:
            value = self._previous_provider.get(
                secret_id, max_age=self._max_age, force_fetch=force_fetch, VersionStage=PREVIOUS_STAGE
            )
        except GetParameterError as exc:
            if not _is_not_found(exc):
                raise
            self._no_previous_until[secret_id] = self._clock() + self._max_age
            return None
        self._no_previous_until.pop(secret_id, None)
        return value if isinstance(value, str) and value else None
