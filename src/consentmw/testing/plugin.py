"""The pytest plugin registered as ``consentmw`` (``pytest11`` entry point).

Installing consentmw makes the fixtures of :mod:`consentmw.testing.fixtures` available in
every pytest run (``consent_config``, ``memory_sink``, ``consent_app``, ``consent_client``);
nothing to import. Importing this module costs little: the fixtures import consentmw's
middleware and werkzeug's test client when a test first asks for them.

Disable it with ``-p no:consentmw`` when a project defines fixtures of the same names.
"""

from __future__ import annotations

from .fixtures import consent_app, consent_client, consent_config, memory_sink

__all__ = ["consent_app", "consent_client", "consent_config", "memory_sink"]
