"""The pytest plugin registered as ``consentmw`` (``pytest11`` entry point)."""

from __future__ import annotations
