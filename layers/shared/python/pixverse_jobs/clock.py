"""Timestamps: ISO 8601 UTC with milliseconds, so they sort as strings (the by_owner index)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def to_iso(moment: datetime) -> str:
    """A UTC moment in the stored form: ``2026-11-25T12:00:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def utc_now_iso() -> str:
    return to_iso(datetime.now(UTC))


def epoch_seconds() -> int:
    return int(time.time())
