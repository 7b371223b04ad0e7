"""Flask and Django are imported by their integration modules only."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["consentmw", "consentmw.testing", "consentmw.testing.plugin", "consentmw.cli"],
)
def test_core_modules_import_no_web_framework(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in ('flask', 'django', 'flask_login') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_the_integrations_import_their_framework() -> None:
    code = (
        "import sys, consentmw.flask, consentmw.django\n"
        "print('flask' in sys.modules, 'django' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "True"]
