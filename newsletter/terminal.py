"""Kept so that `from .terminal import printable` goes on working: `printable` now lives in `newsletter.text`."""

from __future__ import annotations

from .text import printable

__all__ = ["printable"]
