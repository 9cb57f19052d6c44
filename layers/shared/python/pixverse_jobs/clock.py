"""Timestamps: ISO 8601 UTC with milliseconds, so they sort as strings (the by_owner index)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_seconds() -> int:
    return int(time.time())
