"""The ``consentmw.django`` app: registers the system checks and keeps the engine.

The engine (sinks, the background dispatcher, the UI) is built once per process, on first
use, and shared by every :class:`~consentmw.django.ConsentMiddleware` instance (Django's test
client builds a new middleware chain per client) and by the template tags. When a test
changes one of the settings it is built from (``override_settings``), the old engine is
closed and the next request builds a new one.
"""

from __future__ import annotations

import threading
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import setting_changed

from ..config import Config
from ..engine import Engine
from .conf import SETTINGS, build_engine, load_config

__all__ = ["ConsentMWConfig"]


class ConsentMWConfig(AppConfig):
    """The app config of ``consentmw.django`` (label ``consentmw``)."""

    name = "consentmw.django"
    label = "consentmw"
    verbose_name = "consentmw"
    default = True

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        self._lock = threading.Lock()
        self._config: Config | None = None
        self._engine: Engine | None = None

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

        setting_changed.connect(self._setting_changed, dispatch_uid="consentmw.django")

    @property
    def consent_config(self) -> Config:
        """The validated configuration (read from the settings once)."""
        config = self._config
        if config is None:
            with self._lock:
                if self._config is None:
                    self._config = load_config(settings)
                config = self._config
        return config

    @property
    def engine(self) -> Engine:
        """The engine, built on first use."""
        engine = self._engine
        if engine is None:
            config = self.consent_config
            with self._lock:
                if self._engine is None:
                    self._engine = build_engine(settings, config)
                engine = self._engine
        return engine

    def reset(self, timeout: float | None = None) -> None:
        """Close the engine (flushing its events) and forget the configuration; the next
        use reads the settings again."""
        with self._lock:
            engine, self._engine, self._config = self._engine, None, None
        if engine is not None:
            engine.close(timeout)

    def _setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting in SETTINGS:
            self.reset()
