"""Secrets Manager reads through Powertools Parameters, cached per container."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from pixverse_jobs.errors import ConfigurationError

DEFAULT_MAX_AGE_SECONDS = 300


class SecretReader:
    def __init__(self, client: Any = None, *, max_age: int = DEFAULT_MAX_AGE_SECONDS) -> None:
        self._provider = SecretsProvider(boto3_client=client) if client else SecretsProvider()
        self._max_age = max_age

    def get(self, secret_id: str) -> str:
        """The secret's string value (cached ``max_age`` seconds)."""
        value = self._provider.get(secret_id, max_age=self._max_age)
        if not isinstance(value, str) or not value:
            # Never include the value: only the secret's name.
            raise ConfigurationError(f"secret {secret_id} has no string value")
        return value
