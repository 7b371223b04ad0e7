"""The application the ``load`` benchmark serves with gunicorn: consentmw's demo site, bare
or wrapped in the middleware, configured from the environment.

``CMW_BENCH_MODE``: ``bare`` or ``consentmw``; ``CMW_BENCH_DATA``: the demo's data
directory (its secret key); ``CMW_BENCH_SINK``: the events sink URL; ``CMW_BENCH_SPOOL``:
the spool file. Each gunicorn worker imports this module and builds its own middleware.
"""

from __future__ import annotations

import os
from typing import Any

from consentmw import ConsentMiddleware
from consentmw.demo import demo_config, demo_site


def config(data: str, sink: str, spool: str) -> dict[str, Any]:
    cfg = demo_config(data)
    cfg["sinks"] = {"events": [sink], "consent_log": f"sqlite:///{data}/consent.db"}
    cfg["dispatch"] = {"spool": spool}
    return cfg


def build() -> Any:
    if os.environ.get("CMW_BENCH_MODE", "consentmw") == "bare":
        return demo_site()
    return ConsentMiddleware(
        demo_site(),
        config(
            os.environ["CMW_BENCH_DATA"],
            os.environ["CMW_BENCH_SINK"],
            os.environ["CMW_BENCH_SPOOL"],
        ),
    )


def __getattr__(name: str) -> Any:
    # Built when gunicorn looks the application up, so that importing this module for
    # config() builds nothing.
    if name == "app":
        application = build()
        globals()["app"] = application
        return application
    raise AttributeError(name)
