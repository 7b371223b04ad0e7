"""An e-mail hook for ``resolve.email_hook`` in the integration tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fixed_email(environ: Mapping[str, Any]) -> str:
    return "hook@example.test"
