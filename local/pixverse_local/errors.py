"""The local stack's own error: something in the template, the settings or the machine stops it from starting."""

from __future__ import annotations


class LocalStackError(Exception):
    """The local stack cannot start."""
