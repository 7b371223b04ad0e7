"""consentmw: consent kept in signed cookies, enforced on the server, recorded to sinks.

Wrap a WSGI application with :class:`ConsentMiddleware`; read the visitor's consent, jars
and tracking API from :func:`get_context`. Flask and Django integrations live in
``consentmw.flask`` and ``consentmw.django`` and are not imported here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .config import Config
from .consent import ConsentState
from .consentlog import ConsentRecord
from .context import RequestContext, Visitor, get_context
from .errors import (
    ConfigError,
    ConsentMWError,
    JarOverflowError,
    MissingDependencyError,
    SinkError,
    TokenError,
)
from .events import Event
from .rights import Rights, RightsError, SubjectError
from .sinks import MemorySink, Sink, open_sink
from .wsgi import ConsentMiddleware

try:
    __version__ = version("consentmw")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    from ._version import __version__

__all__ = [
    "Config",
    "ConfigError",
    "ConsentMWError",
    "ConsentMiddleware",
    "ConsentRecord",
    "ConsentState",
    "Event",
    "JarOverflowError",
    "MemorySink",
    "MissingDependencyError",
    "RequestContext",
    "Rights",
    "RightsError",
    "Sink",
    "SinkError",
    "SubjectError",
    "TokenError",
    "Visitor",
    "__version__",
    "get_context",
    "open_sink",
]
