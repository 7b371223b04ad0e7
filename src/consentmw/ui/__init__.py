"""What visitors see: the banner, the settings link, script gating, Consent Mode, and the
preferences, policy and asset endpoints.

:class:`UI` is built once per engine. Per response it works in two steps, because the
banner's form needs a CSRF token and the token is bound to the session, whose cookie must go
out with the very response that carries the banner:

1. :meth:`UI.prepare` is called by :meth:`Engine.finish` *before* the engine writes its
   cookies. It decides what this response gets (banner, settings link, gating, Consent
   Mode), renders the inserted markup — asking for the CSRF token, which starts the session
   if need be — and reads ``ctx.consent`` when the result depends on consent, so the engine
   then marks the response ``Vary: Cookie`` / ``Cache-Control: private``. The decision is
   kept in the request's environ.
2. :meth:`UI.transform` is called with the final headers. It fixes ``Content-Length`` and
   the validators and returns a wrapper that streams the body through an
   :class:`~consentmw.ui.inject.Injector`.

Everything is skipped for responses that are not ``text/html`` (or XHTML), are compressed,
are downloads, partial, empty (204/304) or answers to ``HEAD``; for them :meth:`transform`
returns ``None`` and the body is not touched.

Not a template engine for the site: the markup is consentmw's own, styled by its own
stylesheet; the texts can be changed in ``[ui.texts.<lang>]``.
"""

from __future__ import annotations

import codecs
import datetime
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from html import escape
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, quote

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header, parse_options_header

from ..endpoints import Problem, Response, safe_next
from . import render
from .assets import Assets
from .inject import GatedBody, Injector
from .texts import Texts, texts_for

if TYPE_CHECKING:
    from ..context import RequestContext
    from ..engine import Engine

__all__ = ["PLAN_KEY", "UI", "InjectionPlan", "Route"]

#: Where :meth:`UI.prepare` leaves its decision for :meth:`UI.transform`.
PLAN_KEY = "consentmw.ui.plan"

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_FAST_CHARSETS = frozenset(("utf-8", "utf8", "iso-8859-1", "latin-1", "latin1", "us-ascii",
                            "ascii", "windows-1252", "cp1252"))  # fmt: skip
_PROBE = b"<>/=\"' !#&;:.?-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_DIGEST_HEADERS = frozenset(("content-md5", "digest", "content-digest", "repr-digest"))
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_URL_SAFE = "/:@!$&'()*+,;=-._~"
_PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_CACHE_LIMIT = 256
# Where the per-visitor values go in a cached banner: private-use characters, which neither
# the texts nor HTML escaping produce.
_CSRF_SLOT = "\ue000csrf\ue000"
_NEXT_SLOT = "\ue000next\ue000"
_NONCE_SLOT = "\ue000nonce\ue000"


class Route(Protocol):
    """A sub-path handler under the mount: ``route(ctx, rest, method, read_body, scheme)``.

    ``rest`` is what follows ``<mount>/<name>``: ``""`` for the exact path, else starting
    with ``/``. Register one with ``ui.routes["<name>"] = handler``.
    """

    def __call__(
        self,
        ctx: RequestContext,
        rest: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response: ...


@dataclass(frozen=True, slots=True)
class InjectionPlan:
    """What :meth:`UI.transform` does to one response body.

    ``head`` and ``body`` are inserted once each; ``gating`` rewrites the tags of purposes
    outside ``granted``; ``dependent``: the result depends on the visitor's consent;
    ``language``: on ``Accept-Language`` too.
    """

    head: bytes
    body: bytes
    granted: frozenset[str]
    gating: bool
    dependent: bool
    language: bool = False


def _encode(text: str) -> bytes:
    # Character references instead of raw UTF-8: the markup is then right in any
    # ASCII-compatible page encoding (Latin-1, Windows-1252, UTF-8...).
    return text.encode("ascii", "xmlcharrefreplace")


def _current_url(environ: Mapping[str, Any]) -> str:
    """The request's path and query as a same-origin URL for ``next``."""
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    url = quote(path.encode("latin-1", "replace"), safe=_URL_SAFE)
    query = environ.get("QUERY_STRING")
    if query:
        url += "?" + quote(str(query).encode("latin-1", "replace"), safe=_URL_SAFE + "?%")
    return safe_next(url)


def _vary(headers: list[tuple[str, str]], name: str) -> None:
    """Add ``name`` to the response's ``Vary`` header (in place)."""
    for i, (key, value) in enumerate(headers):
        if key.lower() == "vary":
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if "*" not in parts and name.lower() not in (p.lower() for p in parts):
                headers[i] = (key, ", ".join([*parts, name]))
            return
    headers.append(("Vary", name))


def _not_allowed(allow: str, page: Response) -> Response:
    page.status = 405
    page.headers.append(("Allow", allow))
    return page


class UI:
    """The consent UI of one engine. See the module docstring.

    ``routes`` maps the first path segment under the mount (``preferences``, ``policy``,
    ``assets``) to its :class:`Route`; other modules add theirs (``optout``) the same way.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        config = self.config = engine.config
        ui = config.ui
        self.mount = config.site.mount
        self.assets = Assets(self.mount)
        self.routes: dict[str, Route] = {
            "preferences": self._preferences,
            "policy": self._policy,
            "assets": self._asset,
        }
        languages = {ui.default_language, *ui.texts}
        for purpose in config.purposes.values():
            languages.update(purpose.translations)
        # The default first: a wildcard ("*") then picks it.
        self.languages = (ui.default_language, *sorted(languages - {ui.default_language}))
        self._texts: dict[str, Texts] = {lang: texts_for(config, lang) for lang in self.languages}
        self._lang_cache: dict[str, str] = {}
        self._charset_cache: dict[str, bool] = {}
        self._type_cache: dict[str, bool] = {}
        self._banner_cache: dict[tuple[str, bool, bool, bool], str] = {}
        self._cm_cache: dict[tuple[frozenset[str], bool], str] = {}
        self._purposes = tuple(config.purposes.values())
        self._optional = config.purpose_ids - config.required
        self._gating = ui.script_gating and bool(self._optional)
        cm = config.consent_mode
        self._consent_mode: dict[str, list[str]] | None = (
            {ctype: list(purposes) for ctype, purposes in cm.mapping.items()}
            if cm.enabled
            else None
        )
        self._active = ui.banner or ui.settings_link or self._gating or cm.enabled
        self._css_url = self.assets.url("consent.css")
        self._js_url = self.assets.url("consent.js")
        self._cm_url = self.assets.url("consent-mode.js")

    # ------------------------------------------------------------------ language

    def language(self, environ: Mapping[str, Any]) -> str | None:
        """The configured language that best matches ``Accept-Language`` (the purposes'
        translations and ``[ui.texts]``), else ``ui.default_language``."""
        default = self.config.ui.default_language
        header = environ.get("HTTP_ACCEPT_LANGUAGE")
        if not header or len(self.languages) == 1 or not isinstance(header, str):
            return default
        # Browsers send a few dozen bytes; a longer header is cut, not parsed at length.
        header = header[:512]
        found = self._lang_cache.get(header)
        if found is None:
            accept = parse_accept_header(header, LanguageAccept)
            found = accept.best_match(self.languages, default=default) or default
            if len(self._lang_cache) >= _CACHE_LIMIT:
                self._lang_cache.clear()
            self._lang_cache[header] = found
        return found

    def texts(self, environ: Mapping[str, Any]) -> Texts:
        """The texts in the request's language."""
        lang = self.language(environ) or self.config.ui.default_language
        return self._texts.get(lang) or texts_for(self.config, lang)

    def _nonce(self, environ: Mapping[str, Any]) -> str | None:
        nonce = environ.get(self.config.ui.csp_nonce_environ_key)
        return nonce if isinstance(nonce, str) and nonce else None

    # ------------------------------------------------------------------ GPC

    def gpc_document(self) -> Response:
        """``/.well-known/gpc.json`` (Global Privacy Control, section 4.2): ``gpc`` is true
        when some purpose honours the signal; ``lastUpdate`` is the policy version when
        that is a date."""
        doc: dict[str, Any] = {"gpc": bool(self.config.gpc_purposes)}
        version = self.config.policy.version
        if _DATE.fullmatch(version):
            try:
                datetime.date.fromisoformat(version)
            except ValueError:
                pass
            else:
                doc["lastUpdate"] = version
        response = Response.json(doc)
        response.headers = [(k, v) for k, v in response.headers if k != "Cache-Control"]
        response.headers.append(("Cache-Control", "max-age=86400"))
        return response

    # ------------------------------------------------------------------ pages

    def page(
        self,
        ctx: RequestContext,
        sub: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        """Answer ``<mount><sub>`` (``sub`` starts with ``/``) through :attr:`routes`."""
        name, sep, rest = sub[1:].partition("/")
        route = self.routes.get(name)
        if route is None:
            return self._not_found(ctx)
        return route(ctx, sep + rest, method, read_body, scheme)

    def _view(self, ctx: RequestContext) -> render.PageView:
        return render.PageView(
            texts=self.texts(ctx.environ),
            css_url=self._css_url,
            nonce=self._nonce(ctx.environ),
            mount=self.mount,
            site_name=self.config.site.name,
            policy_url=self.config.policy.url,
        )

    def _html(self, text: str, status: int = 200) -> Response:
        response = Response.html(text, status)
        response.headers.append(("Content-Security-Policy", _PAGE_CSP))
        response.headers.append(("Vary", "Accept-Language"))
        return response

    def _not_found(self, ctx: RequestContext) -> Response:
        return self._html(render.problem_page(self._view(ctx), 404, ""), 404)

    def _preferences(
        self,
        ctx: RequestContext,
        rest: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        if rest:
            return self._not_found(ctx)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD", self._not_found(ctx))
        environ = ctx.environ
        query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=20)
        back = safe_next(query.get("next", ["/"])[0])
        next_url = back if "next" in query else f"{self.mount}/preferences?saved=1"
        state = ctx.consent
        stored = ctx.stored()
        decided = stored is not None and state.decided and stored.decided
        gpc_sent = environ.get("HTTP_SEC_GPC") == "1"
        view = self._view(ctx)
        text = render.preferences_page(
            view,
            config=self.config,
            granted=state.granted,
            decided_at=stored.decided_at if decided and stored is not None else None,
            decided_version=stored.version if stored is not None else None,
            receipt=stored.consent_id if stored is not None else None,
            gpc_sent=gpc_sent,
            gpc_honoured=self.config.gpc_purposes if gpc_sent else frozenset(),
            csrf=self.engine.csrf_token(ctx),
            next_url=next_url,
            saved="saved" in query,
            back_url=back,
        )
        return self._html(text)

    def _policy(
        self,
        ctx: RequestContext,
        rest: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        if rest:
            return self._not_found(ctx)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD", self._not_found(ctx))
        return self._html(render.policy_page(self._view(ctx), config=self.config))

    def _asset(
        self,
        ctx: RequestContext,
        rest: str,
        method: str,
        read_body: Callable[[int], bytes],
        scheme: str,
    ) -> Response:
        name = rest[1:]
        response = (
            self.assets.response(name, ctx.environ.get("HTTP_IF_NONE_MATCH")) if name else None
        )
        if response is None:
            return self._not_found(ctx)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD", self._not_found(ctx))
        return response

    def problem_page(self, ctx: RequestContext, problem: Problem) -> Response:
        """A friendly HTML page for a refused consent request; the status is kept."""
        response = self._html(
            render.problem_page(self._view(ctx), problem.status, problem.reason), problem.status
        )
        if problem.status == 503:
            response.headers.append(("Retry-After", "30"))
        return response

    # ------------------------------------------------------------------ responses

    def _charset_ok(self, charset: str) -> bool:
        """Is the page encoding ASCII-compatible (so bytes can be matched and inserted)?"""
        name = charset.strip().strip("\"'").lower()
        if name in _FAST_CHARSETS:
            return True
        known = self._charset_cache.get(name)
        if known is None:
            try:
                codec = codecs.lookup(name).name
            except (LookupError, ValueError):  # unknown, or not a valid name at all ("\0")
                codec = ""
            known = False
            if (
                codec
                and not codec.startswith(("utf-16", "utf-32", "utf-7"))
                and "2022" not in codec
            ):
                try:
                    known = _PROBE.decode(codec) == _PROBE.decode("ascii")
                except (LookupError, ValueError):  # not a text encoding (rot13, punycode...)
                    known = False
            if len(self._charset_cache) >= _CACHE_LIMIT:
                self._charset_cache.clear()
            self._charset_cache[name] = known
        return known

    def _eligible(
        self, environ: Mapping[str, Any], status: int, headers: Iterable[tuple[str, str]]
    ) -> bool:
        if not 200 <= status < 300 or status in (204, 205, 206):
            return False
        if environ.get("REQUEST_METHOD") == "HEAD":
            return False
        content_type: str | None = None
        for key, value in headers:
            lower = key.lower()
            if lower == "content-type":
                content_type = value
            elif lower == "content-encoding":
                if value.strip().lower() not in ("", "identity"):
                    return False
            elif lower == "content-disposition":
                if value.split(";", 1)[0].strip().lower() == "attachment":
                    return False
            elif lower == "content-range":
                return False
        if content_type is None:
            return False
        known = self._type_cache.get(content_type)
        if known is None:
            known = self._html_type(content_type)
            if len(self._type_cache) >= _CACHE_LIMIT:
                self._type_cache.clear()
            self._type_cache[content_type] = known
        return known

    def _html_type(self, content_type: str) -> bool:
        """Is this an HTML media type in an ASCII-compatible encoding?"""
        media, _, params = content_type.partition(";")
        if media.strip().lower() not in _HTML_TYPES:
            return False
        if params:
            charset = parse_options_header(content_type)[1].get("charset")
            if charset is not None and not self._charset_ok(charset):
                return False
        return True

    def prepare(self, ctx: RequestContext, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Decide and render what :meth:`transform` will insert into this response.

        Called by the engine before it writes its cookies: the banner's CSRF token starts
        the session when there is none, and reading ``ctx.consent`` here makes the engine
        mark a consent-dependent response private.
        """
        environ: MutableMapping[str, Any] = ctx.environ
        environ.pop(PLAN_KEY, None)
        if not self._active or not self._eligible(environ, status, headers):
            return
        ui = self.config.ui
        state = ctx.state()
        show_banner = ui.banner and not state.decided
        dependent = show_banner or self._gating or self._consent_mode is not None
        if dependent:
            state = ctx.consent  # the page now depends on consent: Vary: Cookie, private
        granted = state.granted
        gating = self._gating and not self._optional <= granted
        nonce = self._nonce(environ)
        head = ""
        if self._consent_mode is not None:
            head = self._consent_mode_tag(granted, nonce)
        body: list[str] = []
        if ui.settings_link or show_banner:
            texts = self.texts(environ)
            body.append(render.stylesheet(self._css_url, nonce))
            if ui.settings_link:
                body.append(render.settings_link(f"{self.mount}/preferences", texts))
            if show_banner:
                body.append(self._banner(ctx, texts, nonce))
                ctx.notice_rendered = True
        if not head and not body and not gating:
            return
        environ[PLAN_KEY] = InjectionPlan(
            head=_encode(head),
            body=_encode("".join(body)),
            granted=granted,
            gating=gating,
            dependent=dependent,
            language=bool(body) and len(self.languages) > 1,
        )

    def _consent_mode_tag(self, granted: frozenset[str], nonce: str | None) -> str:
        """The Consent Mode tag for a consent state: rendered once per state (a slot for
        the nonce, which changes with every page)."""
        key = (granted, nonce is not None)
        template = self._cm_cache.get(key)
        if template is None:
            cm = self.config.consent_mode
            template = render.consent_mode_tag(
                self._cm_url,
                cm.types(granted),
                cm.wait_for_update_ms,
                None if nonce is None else _NONCE_SLOT,
            )
            if len(self._cm_cache) >= _CACHE_LIMIT:
                self._cm_cache.clear()
            self._cm_cache[key] = template
        if nonce is None:
            return template
        return template.replace(_NONCE_SLOT, escape(nonce, quote=True))

    def _banner(self, ctx: RequestContext, texts: Texts, nonce: str | None) -> str:
        """The banner's markup. Only the CSRF token and the ``next`` URL differ from one
        visitor to the next: the rest is rendered once per language and state and kept, with
        slots where those two go."""
        view = self._banner_view(ctx, texts, nonce)
        if nonce is not None:  # a new nonce every request: nothing to reuse
            return render.banner(view)
        key = (texts.lang, view.gpc, view.notice, view.policy_changed)
        template = self._banner_cache.get(key)
        if template is None:
            template = render.banner(replace(view, csrf=_CSRF_SLOT, next=_NEXT_SLOT))
            if len(self._banner_cache) >= _CACHE_LIMIT:
                self._banner_cache.clear()
            self._banner_cache[key] = template
        return template.replace(_CSRF_SLOT, escape(view.csrf, quote=True)).replace(
            _NEXT_SLOT, escape(view.next, quote=True)
        )

    def _banner_view(
        self, ctx: RequestContext, texts: Texts, nonce: str | None
    ) -> render.BannerView:
        state = ctx.state()
        return render.BannerView(
            mount=self.mount,
            csrf=self.engine.csrf_token(ctx),
            next=_current_url(ctx.environ),
            purposes=self._purposes,
            texts=texts,
            script_url=self._js_url,
            nonce=nonce,
            gpc_purposes=self.config.gpc_purposes,
            gpc=state.source == "gpc",
            notice=state.model == "notice",
            policy_changed=state.stored_version is not None
            and state.stored_version != state.policy_version,
            notice_url=f"{self.mount}/policy",
            policy_url=self.config.policy.url,
            consent_mode=self._consent_mode,
        )

    def transform(
        self, ctx: RequestContext, status: int, headers: list[tuple[str, str]]
    ) -> Callable[[Iterable[bytes]], Iterable[bytes]] | None:
        """The body rewriter for this response, or ``None`` to leave it untouched.

        ``headers`` is changed in place: ``Content-Length`` grows by the inserted size when
        that is known up front (no gating) and is removed when gating may change the body
        by an unknown amount; digests of the original body are removed; ``ETag`` becomes
        weak, and a consent-dependent body loses its validators (``ETag``,
        ``Last-Modified``) so that a ``304`` from the application can never bring back a
        page rendered for another consent state.
        """
        plan = ctx.environ.pop(PLAN_KEY, None)
        if not isinstance(plan, InjectionPlan):
            return None
        inserted = len(plan.head) + len(plan.body)
        if plan.language:
            _vary(headers, "Accept-Language")
        i = 0
        while i < len(headers):
            key, value = headers[i]
            lower = key.lower()
            if lower == "content-length":
                if plan.gating or not value.strip().isdigit():
                    del headers[i]
                    continue
                headers[i] = (key, str(int(value) + inserted))
            elif lower in ("etag", "last-modified"):
                if plan.dependent:
                    del headers[i]
                    continue
                if lower == "etag" and not value.startswith("W/"):
                    headers[i] = (key, "W/" + value)
            elif lower in _DIGEST_HEADERS:
                del headers[i]
                continue
            i += 1

        def wrap(app_iter: Iterable[bytes]) -> Iterable[bytes]:
            injector = Injector(
                head=plan.head, body=plan.body, granted=plan.granted, gating=plan.gating
            )
            return GatedBody(app_iter, injector)

        return wrap
