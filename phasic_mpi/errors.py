"""Exceptions that the package raises for problems in the user's input."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the offending key path."""
