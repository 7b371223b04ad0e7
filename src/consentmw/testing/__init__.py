"""Test helpers for code that uses consentmw, and for new sinks.

- :class:`SinkContract` — the contract suite a sink's tests subclass (see
  :mod:`consentmw.testing.contract`);
- :func:`events`, :func:`consent_states`, :func:`consent_choices` and friends — hypothesis
  strategies (:mod:`consentmw.testing.strategies`);
- the pytest plugin (fixtures ``consent_config``, ``memory_sink``, ``consent_app``,
  ``consent_client``; :mod:`consentmw.testing.fixtures`) is registered by installing
  consentmw; nothing to import. :class:`ConsentClient` is the type of ``consent_client``.

The names load on first use: the pytest plugin imports this package in every test run, and a
project that has neither hypothesis nor these helpers in use must not pay for (or need) them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contract import SinkContract, sample_events
    from .fixtures import ConsentClient, default_config
    from .strategies import (
        HOSTILE_STRINGS,
        consent_choices,
        consent_states,
        events,
        json_values,
        texts,
        timestamps,
    )

__all__ = [
    "HOSTILE_STRINGS",
    "ConsentClient",
    "SinkContract",
    "consent_choices",
    "consent_states",
    "default_config",
    "events",
    "json_values",
    "sample_events",
    "texts",
    "timestamps",
]

_LAZY = {
    "SinkContract": "contract",
    "sample_events": "contract",
    "ConsentClient": "fixtures",
    "default_config": "fixtures",
    "HOSTILE_STRINGS": "strategies",
    "consent_choices": "strategies",
    "consent_states": "strategies",
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
