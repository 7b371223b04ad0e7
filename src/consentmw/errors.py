"""The exception tree.

Every error consentmw raises derives from :class:`ConsentMWError`, so an operator can catch
the library's errors without catching unrelated ones. Errors carry data (the field, the
offending value, the fix) rather than only a formatted message.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConsentMWError",
    "JarOverflowError",
    "MissingDependencyError",
    "SinkError",
    "TokenError",
]


class ConsentMWError(Exception):
    """Base class of every error raised by consentmw."""


class ConfigError(ConsentMWError, ValueError):
    """A configuration value is missing or wrong.

    ``field`` is the dotted path of the offending key (``policy.model``,
    ``cookies[1].purpose``), ``value`` the value found and ``fix`` what to do about it.
    """

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        shown = "(missing)" if value is _MISSING else repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"{field} = {shown}: {fix}")


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: object = _Missing()


class SinkError(ConsentMWError):
    """A sink could not write, read or erase.

    ``retryable`` is true for failures that may pass on a later attempt (the server is down,
    a timeout, a lock); false for failures that the same data will always meet (a value the
    sink cannot store). The dispatcher retries and spools the first kind and isolates the
    second kind into the dead-letter store.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class JarOverflowError(ConsentMWError, ValueError):
    """A cookie jar would not fit in one cookie (4096 bytes, name and value)."""

    def __init__(self, jar: str, size: int, limit: int) -> None:
        self.jar = jar
        self.size = size
        self.limit = limit
        super().__init__(
            f"the {jar} cookie would be {size} bytes, over the browser limit of {limit}: "
            f"store less in ctx.{jar} (keep ids and look the rest up on the server)"
        )


class MissingDependencyError(ConsentMWError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install``."""

    def __init__(self, feature: str, extra: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs an extra: pip install 'consentmw[{extra}]'")


class TokenError(ConsentMWError, ValueError):
    """A signed token (opt-out link, CSRF token) is garbled, tampered with or expired."""
