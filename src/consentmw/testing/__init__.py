"""Test helpers for code that uses consentmw, and for new sinks.

- :class:`SinkContract` — the contract suite a sink's tests subclass (see
  :mod:`consentmw.testing.contract`);
- :func:`events` and friends — hypothesis strategies (:mod:`consentmw.testing.strategies`);
- the pytest plugin (fixtures ``consent_config``, ``memory_sink``, ``consent_app``,
  ``consent_client``) is registered by installing consentmw; nothing to import.

The names load on first use: the pytest plugin imports this package in every test run, and a
project that has neither hypothesis nor these helpers in use must not pay for (or need) them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contract import SinkContract, sample_events
    from .strategies import HOSTILE_STRINGS, events, json_values, texts, timestamps

__all__ = [
    "HOSTILE_STRINGS",
    "SinkContract",
    "events",
    "json_values",
    "sample_events",
    "texts",
    "timestamps",
]

_LAZY = {
    "SinkContract": "contract",
    "sample_events": "contract",
    "HOSTILE_STRINGS": "strategies",
    "events": "strategies",
    "json_values": "strategies",
    "texts": "strategies",
    "timestamps": "strategies",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
