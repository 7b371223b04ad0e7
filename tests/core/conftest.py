"""Fixtures of the core tests (helpers live in ``support``)."""

from tests.core.support import clock, make_client

__all__ = ["clock", "make_client"]
