"""The WSGI middleware: extract values from the environ, let the engine decide, apply.

Wrap any WSGI application::

    from consentmw import ConsentMiddleware
    app = ConsentMiddleware(app, "consentmw.toml")

The middleware serves its own endpoints under ``site.mount`` (and
``/.well-known/gpc.json``), puts a :class:`~consentmw.context.RequestContext` in
``environ["consentmw.context"]`` for the application, and on the way out removes the
``Set-Cookie`` headers consent does not allow, adds its own cookies, queues the page-visit
event and, for HTML, streams the banner and the script gating into the body.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from werkzeug.wsgi import get_input_stream

from .config import Config
from .context import ENVIRON_KEY, RequestContext
from .engine import Engine
from .sinks import Sink

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .rights import Rights

__all__ = ["ConsentMiddleware"]

log = logging.getLogger("consentmw")

#: Request bodies teed for ``capture`` rules are kept up to this size.
_CAPTURE_LIMIT = 64 * 1024


class ConsentMiddleware:
    """Consent, signed cookie jars, enforcement and tracking around a WSGI application.

    ``config`` is a :class:`~consentmw.Config`, a mapping with the TOML structure, or the
    path of a TOML file. ``sinks`` maps sink URLs to sink objects to use instead of opening
    those URLs (tests, custom sinks). ``necessary_cookies`` names cookies the wrapped
    framework sets itself and that must never be blocked (the Flask and Django integrations
    pass their session and CSRF cookies). ``email_hook`` is called with the environ for the
    signed-in visitor's e-mail address when ``resolve.email_hook`` is not configured (the
    Flask integration passes Flask-Login's). ``clock`` returns the time in seconds (tests).
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: Config | Mapping[str, Any] | str | Any,
        *,
        sinks: Mapping[str, Sink] | None = None,
        necessary_cookies: Sequence[str] = (),
        email_hook: Callable[[Mapping[str, Any]], str | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.config = Config.load(config)
        self.engine = Engine(
            self.config,
            clock=clock,
            sinks=sinks,
            extra_necessary_cookies=necessary_cookies,
            email_hook=email_hook,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        engine = self.engine
        if engine.is_endpoint(environ.get("PATH_INFO", "")):
            return self._endpoint(environ, start_response)
        ctx = engine.context(environ)
        environ[ENVIRON_KEY] = ctx
        tee = (
            self._tee(environ)
            if engine.capture_wanted(
                environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            )
            else None
        )
        started: list[Any] = []

        def _start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            code = _status_code(status)
            try:
                form = tee.form() if tee is not None else None
                headers = engine.finish(ctx, code, headers, form=form)
                transform = engine.ui.transform(ctx, code, headers)
            except Exception:
                log.exception("consentmw failed on a response; non-essential cookies removed")
                headers = _fail_closed(engine, ctx, headers)
                transform = None
            started.append(transform)
            return start_response(status, headers, exc_info)

        app_iter = self.app(environ, _start_response)
        if started:
            transform = started[0]
            return app_iter if transform is None else transform(app_iter)
        return _LateStart(app_iter, started)

    def _endpoint(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        engine = self.engine
        ctx = engine.context(environ)
        environ[ENVIRON_KEY] = ctx
        stream = get_input_stream(environ, safe_fallback=True)
        try:
            response = engine.endpoint(ctx, stream.read, _scheme(environ, engine))
        except Exception:
            log.exception("consentmw endpoint failed")
            from .endpoints import Response

            response = Response.json({"error": "internal error"}, 500)
        start_response(response.status_line, response.finalize())
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [response.body]

    def _tee(self, environ: WSGIEnvironment) -> _TeeInput:
        tee = _TeeInput(environ["wsgi.input"], environ.get("CONTENT_TYPE", ""))
        environ["wsgi.input"] = tee
        return tee

    # -- operator API

    def close(self, timeout: float | None = None) -> bool:
        """Flush queued events (waiting at most ``timeout`` seconds, default
        ``dispatch.close_timeout_s``), stop the background threads and close the sinks.
        ``True`` when everything was written or spooled in time."""
        return self.engine.close(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued events are written or spooled; ``False`` on timeout."""
        return self.engine.dispatcher.flush(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: events ``enqueued``, ``written``, ``retried``, ``spooled``,
        ``replayed``, ``dead_lettered``, ``dropped`` by reason, per sink; and the
        middleware's own (cookies blocked, bad cookies, decisions…)."""
        return self.engine.stats()

    @property
    def rights(self) -> Rights:
        """Data-subject rights over this site's sinks: export, rectify, erase, restrict,
        opt-out links and suppression lists, receipts and reports (see
        :class:`consentmw.rights.Rights`)."""
        return self.engine.rights

    @property
    def sinks(self) -> Mapping[str, Sink]:
        """The open sinks by URL (the consent log among them)."""
        return self.engine.sinks


@functools.lru_cache(maxsize=64)
def _status_code(status: str) -> int:
    # Memoised: a site answers with a handful of distinct status lines.
    try:
        return int(status[:3])
    except ValueError:
        return 500


def _scheme(environ: WSGIEnvironment, engine: Engine) -> str:
    return engine.request_scheme(environ)


def _fail_closed(
    engine: Engine, ctx: RequestContext, headers: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    from .cookies import set_cookie_name

    keep = []
    for key, value in headers:
        if key.lower() == "set-cookie":
            rule = engine.config.cookie_rule(set_cookie_name(value))
            if rule is None or rule.purpose not in engine.config.required:
                continue
        keep.append((key, value))
    return keep


class _LateStart:
    """An app iterable whose ``start_response`` comes with the first chunk (generators):
    the body transform is chosen once that chunk is out."""

    def __init__(self, app_iter: Iterable[bytes], started: list[Any]) -> None:
        self._app_iter = app_iter
        self._started = started
        self._iter: Iterator[bytes] | None = None

    def __iter__(self) -> Iterator[bytes]:
        source = iter(self._app_iter)
        first: list[bytes] = []
        for chunk in source:
            first.append(chunk)
            if self._started:
                break
        transform = self._started[0] if self._started else None

        def chained() -> Iterator[bytes]:
            yield from first
            yield from source

        body: Iterable[bytes] = chained()
        if transform is not None:
            body = transform(body)
        return iter(body)

    def close(self) -> None:
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()


class _TeeInput:
    """``wsgi.input`` that keeps a copy of the first 64 KiB the application reads, so a
    ``capture`` rule can see the form fields without reading the body itself."""

    def __init__(self, stream: Any, content_type: str) -> None:
        self._stream = stream
        self._content_type = content_type
        self._kept = bytearray()

    def _keep(self, data: bytes) -> bytes:
        room = _CAPTURE_LIMIT - len(self._kept)
        if room > 0 and data:
            self._kept += data[:room]
        return data

    def read(self, *args: Any) -> bytes:
        return self._keep(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._keep(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        return [self._keep(line) for line in self._stream.readlines(*args)]

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._keep(line)

    def form(self) -> dict[str, list[str]] | None:
        """The form fields seen (urlencoded or multipart text fields), or ``None``."""
        if not self._kept:
            return None
        from .endpoints import content_kind, parse_form
        from .engine import _parse_multipart

        kind = content_kind(self._content_type)
        pairs: Any
        if kind == "form":
            pairs = parse_form(bytes(self._kept))
        elif kind == "multipart":
            parsed = _parse_multipart(self._content_type, bytes(self._kept))
            pairs = parsed[1] if isinstance(parsed, tuple) else None
        else:
            return None
        if not isinstance(pairs, list):
            return None
        out: dict[str, list[str]] = {}
        for key, value in pairs:
            out.setdefault(key, []).append(value)
        return out
