"""The Django middleware: the same engine as the WSGI middleware, rendered to Django responses.

Per request it does what :class:`consentmw.ConsentMiddleware` does, with
``request.META`` (the WSGI environ) as the engine's environ:

1. requests for consentmw's endpoints (``site.mount``, ``/.well-known/gpc.json``) are
   answered by :meth:`Engine.endpoint_response <consentmw.engine.Engine.endpoint_response>`
   and rendered to an ``HttpResponse``; no view, and no view middleware, runs for them;
2. otherwise the request gets its context (``request.consentmw``) and the view runs;
3. the response's headers and cookies go through :meth:`Engine.finish_response
   <consentmw.engine.Engine.finish_response>` — the cookies as their ``Set-Cookie`` values,
   and those consent does not allow are removed from ``response.cookies`` — and consentmw's
   own cookies are added with ``response.set_cookie`` (deletions too, with the very
   attributes of the cookie they delete);
4. HTML gets the banner and the script gating through the UI's body transform: the content
   of a plain response is rewritten, the iterator of a streaming response is wrapped (it stays
   streaming).

Not for ASGI-only async streaming bodies: their headers and cookies are handled, their HTML
is passed through without the banner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, RawPostDataException
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase

from ..context import ENVIRON_KEY, RequestContext
from ..cookies import CookieSpec
from ..endpoints import Response
from ..engine import Engine
from .conf import REQUEST_KEY, app_config, framework_cookies

__all__ = ["ConsentMiddleware", "render_cookie"]

log = logging.getLogger("consentmw")

_EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
_SAMESITE: dict[str, Literal["Lax", "Strict", "None"]] = {
    "Lax": "Lax",
    "Strict": "Strict",
    "None": "None",
}


class ConsentMiddleware:
    """Consent, signed cookie jars, enforcement and tracking for a Django project.

    List it in ``MIDDLEWARE`` (see :mod:`consentmw.django` for where); the configuration
    comes from the ``CONSENTMW`` or ``CONSENTMW_CONFIG`` setting.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self._app = app_config()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        engine = self._app.engine
        meta = request.META
        if engine.is_endpoint(meta.get("PATH_INFO", "")):
            return self._endpoint(engine, request)
        ctx = engine.context(meta)
        meta[ENVIRON_KEY] = ctx
        request.consentmw = ctx  # type: ignore[attr-defined]
        meta[REQUEST_KEY] = request  # for the e-mail hook (request.user)
        try:
            response = self.get_response(request)
            return self._finish(engine, ctx, request, response)
        finally:
            meta.pop(REQUEST_KEY, None)

    def _endpoint(self, engine: Engine, request: HttpRequest) -> HttpResponse:
        meta = request.META
        ctx = engine.context(meta)
        meta[ENVIRON_KEY] = ctx
        request.consentmw = ctx  # type: ignore[attr-defined]
        meta[REQUEST_KEY] = request  # the consent event may carry request.user's e-mail
        scheme = "https" if request.is_secure() else engine.request_scheme(meta)
        cookies: list[CookieSpec]
        try:
            answer, cookies = engine.endpoint_response(ctx, request.read, scheme)
        except Exception:
            log.exception("consentmw endpoint failed")
            answer, cookies = Response.json({"error": "internal error"}, 500), []
        finally:
            meta.pop(REQUEST_KEY, None)
        body = b"" if request.method == "HEAD" else answer.body
        response = HttpResponse(body, status=answer.status)
        _set_headers(response, answer.finalize())
        for spec in cookies:
            render_cookie(response, spec)
        return response

    def _finish(
        self,
        engine: Engine,
        ctx: RequestContext,
        request: HttpRequest,
        response: HttpResponseBase,
    ) -> HttpResponseBase:
        status = response.status_code
        # Each morsel rendered once (http.cookies renders in Python, attribute by attribute):
        # the same text is filtered and then compared with what was kept.
        morsels = [(key, morsel.OutputString()) for key, morsel in response.cookies.items()]
        headers = [*response.items(), *(("Set-Cookie", text) for _, text in morsels)]
        async_body = response.streaming and getattr(response, "is_async", False)
        try:
            outcome = engine.finish_response(ctx, status, headers, form=_form(engine, request))
            transform = None if async_body else engine.ui.transform(ctx, status, outcome.headers)
        except Exception:
            log.exception("consentmw failed on a response; non-essential cookies removed")
            _fail_closed(engine, response)
            return response
        kept = {value for key, value in outcome.headers if key.lower() == "set-cookie"}
        for key, text in morsels:
            if text not in kept:
                del response.cookies[key]
        # A view may also set the header itself (response["Set-Cookie"] = ...): the same
        # filter applies to it.
        raw = response.get("Set-Cookie")
        if raw is not None and raw not in kept:
            del response["Set-Cookie"]
        _set_headers(
            response,
            [(k, v) for k, v in outcome.headers if k.lower() != "set-cookie"],
            replace=[k for k, _ in headers if k.lower() != "set-cookie"],
        )
        for spec in outcome.cookies:
            render_cookie(response, spec)
        if transform is not None:
            _transform_body(response, transform)
        return response


def render_cookie(response: HttpResponseBase, spec: CookieSpec) -> None:
    """Add one cookie to a Django response with exactly the spec's attributes.

    ``response.set_cookie`` for the first cookie of a name. Django's ``response.cookies``
    holds one morsel per name, but a browser keeps one cookie per name, domain and path, so
    a second cookie of the same name (deletions of a withdrawn cookie for several domains)
    goes in under a distinct key: Django writes each morsel under the morsel's own name.
    """
    if spec.name in response.cookies:
        scratch = HttpResponse()
        render_cookie(scratch, spec)
        key = f"{spec.name} {len(response.cookies)}"
        response.cookies[key] = scratch.cookies[spec.name]
        return
    response.set_cookie(
        spec.name,
        spec.value,
        max_age=spec.max_age,
        expires=_EPOCH if spec.deletes else None,
        path=spec.path,
        domain=spec.domain,
        secure=spec.secure,
        httponly=spec.httponly,
        samesite=_samesite(spec.samesite),
    )


def _samesite(value: str | None) -> Literal["Lax", "Strict", "None"] | None:
    # The configuration allows exactly these three spellings (config.CookieSettings).
    return _SAMESITE.get(value or "")


def _set_headers(
    response: HttpResponseBase,
    headers: Sequence[tuple[str, str]],
    *,
    replace: Iterable[str] = (),
) -> None:
    """Make the response's headers ``headers``: names in ``replace`` that are gone are
    removed; repeated names (``Vary`` from two places) are joined with commas."""
    merged: dict[str, tuple[str, list[str]]] = {}
    for key, value in headers:
        entry = merged.setdefault(key.lower(), (key, []))
        entry[1].append(value)
    for key in replace:
        if key.lower() not in merged and response.has_header(key):
            del response[key]
    for key, values in merged.values():
        value = ", ".join(values)
        if response.get(key) != value:
            response[key] = value


def _form(engine: Engine, request: HttpRequest) -> dict[str, list[str]] | None:
    """The submitted form fields, when a ``capture`` rule wants them (Django has parsed the
    body for the view already, or parses it now from what it kept)."""
    meta = request.META
    if not engine.capture_wanted(meta.get("REQUEST_METHOD", ""), meta.get("PATH_INFO", "")):
        return None
    try:
        return {key: list(values) for key, values in request.POST.lists()}
    except (RawPostDataException, MultiPartParserError, SuspiciousOperation, ValueError):
        log.debug("consentmw: the form of %s could not be read for capture", meta.get("PATH_INFO"))
        return None


def _transform_body(
    response: HttpResponseBase, transform: Callable[[Iterable[bytes]], Iterable[bytes]]
) -> None:
    if response.streaming:
        # The wrapped iterator is consumed as the server sends it: still streaming.
        response.streaming_content = transform(response.streaming_content)  # type: ignore[attr-defined]
        return
    assert isinstance(response, HttpResponse)
    response.content = b"".join(transform([response.content]))
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))


def _fail_closed(engine: Engine, response: HttpResponseBase) -> None:
    """After an internal error: only cookies of required purposes and the framework's own
    stay."""
    config = engine.config
    necessary = framework_cookies(settings, config)
    for key, morsel in list(response.cookies.items()):
        name = morsel.key
        rule = config.cookie_rule(name)
        if name in necessary or (rule is not None and rule.purpose in config.required):
            continue
        del response.cookies[key]
