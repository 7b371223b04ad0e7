"""Section 5: inside Flask and inside Django, next to the frameworks' own cookie machinery.

Flask: a hello view that sets an analytics cookie (``_ga_X``), called as a WSGI app
in-process; next to it the same view reading Flask's signed session, and modifying it (so
Flask re-signs the cookie), and the same app with ``consentmw.flask.Consent``.

Django: the same view in a minimal project (no other middleware, SQLite in memory, local
memory cache), with django-cookie-consent's ``CleanCookiesMiddleware`` (its one middleware,
with an "analytics" cookie group declaring ``_ga_X``) and with consentmw's Django
middleware, each for an accepted and a declined visitor. Every Django request sends the
analytics cookie, so django-cookie-consent has something to check (and both delete it for a
declined visitor, on every request). consentmw does more per request:
it verifies a signed cookie, decides the state and removes the ``Set-Cookie`` of a purpose
not granted (django-cookie-consent only deletes cookies the browser already has).

All timed with the CPU clock of the calling thread; "added" is over the bare framework app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.test import EnvironBuilder

from . import bench_request
from ._harness import Goal, Row, SkipSection, interleave, loop_us, row
from .request_path import hold_dispatcher

FLASK = "inside Flask"
DJANGO = "inside Django"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"


def _environ(path: str, cookie: str | None) -> dict[str, Any]:
    headers = {"User-Agent": UA}
    if cookie:
        headers["Cookie"] = cookie
    env: dict[str, Any] = EnvironBuilder(path=path, headers=headers).get_environ()
    return env


# ----------------------------------------------------------------------------- Flask


def flask_cases(calls: int) -> tuple[dict[str, Callable[[], float]], list[Any], str]:
    try:
        import flask
    except ImportError:
        raise SkipSection("flask is not installed") from None

    def make() -> Any:
        app = flask.Flask("bench")
        app.secret_key = "bench-flask-secret-0123456789"

        @app.route("/")
        def hello() -> Any:
            response = flask.make_response("Hello, World!")
            response.set_cookie("_ga_X", "1")
            return response

        @app.route("/read")
        def read() -> Any:
            response = flask.make_response(f"Hello, {flask.session.get('name', 'World')}!")
            response.set_cookie("_ga_X", "1")
            return response

        @app.route("/write")
        def write() -> Any:
            flask.session["n"] = flask.session.get("n", 0) + 1
            response = flask.make_response("Hello, World!")
            response.set_cookie("_ga_X", "1")
            return response

        return app

    bare = make()
    # A session cookie as Flask itself writes it.
    with bare.test_client() as client:
        client.get("/write")
        cookie = client.get_cookie("session")
        assert cookie is not None
        session = f"session={cookie.value}"

    with_cmw = make()
    integration = "consentmw.flask.Consent"
    closers: list[Any] = []
    try:
        from consentmw.flask import Consent

        consent = Consent(with_cmw, config=bench_request.config())
        mw = consent.middleware(with_cmw)
        closers.append(consent.close)
    except ImportError:
        from consentmw import ConsentMiddleware

        integration = "ConsentMiddleware around app.wsgi_app (consentmw.flask not available)"
        mw = ConsentMiddleware(with_cmw.wsgi_app, bench_request.config())
        with_cmw.wsgi_app = mw  # type: ignore[method-assign]
        closers.append(mw.close)
    tracked_app = make()
    try:
        from consentmw.flask import Consent

        tracked_consent = Consent(tracked_app, config=bench_request.config(tracking=True))
        tracked_mw = tracked_consent.middleware(tracked_app)
        closers.append(tracked_consent.close)
    except ImportError:
        from consentmw import ConsentMiddleware

        tracked_mw = ConsentMiddleware(tracked_app.wsgi_app, bench_request.config(tracking=True))
        tracked_app.wsgi_app = tracked_mw  # type: ignore[method-assign]
        closers.append(tracked_mw.close)
    drain = hold_dispatcher(tracked_mw)
    closers.insert(0, lambda: (drain(), setattr(tracked_mw.engine.dispatcher, "_router", None)))
    accepted = bench_request.prefs_cookie(mw, "accept_all")
    declined = bench_request.prefs_cookie(mw, "reject_all")
    sid = bench_request.session_cookie(tracked_mw)
    ga = "_ga_X=1"

    def same(path: str, cookie: str | None) -> list[dict[str, Any]]:
        return [_environ(path, cookie)] * calls

    cases = {
        "Flask hello": lambda: loop_us(bare, same("/", ga)),
        "Flask hello + reading its session": lambda: loop_us(
            bare, same("/read", f"{ga}; {session}")
        ),
        "Flask hello + changing its session (re-sign)": lambda: loop_us(
            bare, same("/write", f"{ga}; {session}")
        ),
        "Flask + consentmw, valid cookie (warm)": lambda: loop_us(
            with_cmw, same("/", f"{ga}; cmw_prefs={accepted}")
        ),
        # Without consent the browser no longer has the analytics cookie (the response
        # that refused it expired it), as in the request-path section.
        "Flask + consentmw, declined": lambda: loop_us(
            with_cmw, same("/", f"cmw_prefs={declined}")
        ),
        "Flask + consentmw, no cookie": lambda: loop_us(with_cmw, same("/", None)),
        "Flask + consentmw + page-visit tracking (request thread)": lambda: loop_us(
            tracked_app, same("/", f"{ga}; cmw_prefs={accepted}; cmw_session={sid}"), before=drain
        ),
    }
    return cases, closers, integration


# ----------------------------------------------------------------------------- Django


def _django_setup() -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    apps = ["django.contrib.contenttypes", "cookie_consent"]
    try:
        import consentmw.django  # noqa: F401

        apps.append("consentmw.django")
    except ImportError:
        pass
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-django-secret-key-0123456789-0123456789",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="benchmarks._django_urls",
        INSTALLED_APPS=apps,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MIDDLEWARE=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
        CONSENTMW=bench_request.config(),
        COOKIE_CONSENT_ENABLED=True,
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def django_cases(calls: int) -> tuple[dict[str, Callable[[], float]], list[Any], str]:
    try:
        import cookie_consent  # noqa: F401
        import django  # noqa: F401
    except ImportError as exc:
        raise SkipSection(f"{exc.name} is not installed") from None
    _django_setup()
    from cookie_consent.cache import delete_cache
    from cookie_consent.models import Cookie, CookieGroup
    from cookie_consent.util import dict_to_cookie_str
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    if not CookieGroup.objects.filter(varname="analytics").exists():
        group = CookieGroup.objects.create(
            varname="analytics", name="Analytics", is_required=False, is_deletable=True
        )
        Cookie.objects.create(cookiegroup=group, name="_ga_X", path="/", domain="")
        delete_cache()
    group = CookieGroup.objects.get(varname="analytics")
    consent_accepted = "cookie_consent=" + dict_to_cookie_str({"analytics": group.get_version()})
    consent_declined = "cookie_consent=" + dict_to_cookie_str({"analytics": "-1"})

    def handler(middleware: list[str]) -> WSGIHandler:
        with override_settings(MIDDLEWARE=middleware):
            return WSGIHandler()

    bare = handler([])
    dcc = handler(["cookie_consent.middleware.CleanCookiesMiddleware"])
    closers: list[Any] = []
    integration = "consentmw.django.ConsentMiddleware"
    ours: Any = None
    try:
        import consentmw.django  # noqa: F401

        ours = handler(["consentmw.django.ConsentMiddleware"])
    except ImportError:
        integration = "not available: consentmw.django has not landed"
    ga = "_ga_X=1"

    def same(cookie: str) -> list[dict[str, Any]]:
        return [_environ("/", cookie)] * calls

    # Each case must do what it says: django-cookie-consent deletes the declined cookie.
    def headers_of(app: Any, cookie: str) -> list[tuple[str, str]]:
        got: list[Any] = []
        body = app(_environ("/", cookie), lambda s, h, e=None: got.append(h))
        b"".join(body)
        getattr(body, "close", lambda: None)()
        return list(got[0])

    assert any(
        "_ga_X=;" in v or '_ga_X="";' in v
        for k, v in headers_of(dcc, f"{ga}; {consent_declined}")
        if k == "Set-Cookie"
    ), "django-cookie-consent did not delete the declined cookie"
    cases: dict[str, Callable[[], float]] = {
        "Django hello": lambda: loop_us(bare, same(ga)),
        "Django + django-cookie-consent, accepted": lambda: loop_us(
            dcc, same(f"{ga}; {consent_accepted}")
        ),
        "Django + django-cookie-consent, declined": lambda: loop_us(
            dcc, same(f"{ga}; {consent_declined}")
        ),
    }
    if ours is not None:
        from consentmw.django.middleware import ConsentMiddleware as DjangoConsent  # noqa: F401

        probe = bench_request.config()
        from consentmw import ConsentMiddleware

        signer = ConsentMiddleware(bench_request.app, probe)
        accepted = bench_request.prefs_cookie(signer, "accept_all")
        declined = bench_request.prefs_cookie(signer, "reject_all")
        signer.close(1)
        cases["Django + consentmw, accepted"] = lambda: loop_us(
            ours, same(f"{ga}; cmw_prefs={accepted}")
        )
        cases["Django + consentmw, declined"] = lambda: loop_us(
            ours, same(f"{ga}; cmw_prefs={declined}")
        )
    return cases, closers, integration


# ----------------------------------------------------------------------------- the section


def run(calls: int, rounds: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    rows: list[Row] = []
    notes: list[str] = []
    for label, build in ((FLASK, flask_cases), (DJANGO, django_cases)):
        try:
            cases, closers, integration = build(calls)
        except SkipSection as exc:
            notes.append(f"{label}: skipped ({exc})")
            continue
        try:
            results = interleave(cases, rounds, progress=progress)
        finally:
            for close in closers:
                close()
        names = list(results)
        base_name = names[0]
        base = (base_name, results[base_name])
        rows.append(row(label, base_name, results[base_name], note=f"{calls} requests per round"))
        base_med = rows[-1].median
        dcc_added = None
        if label == DJANGO:
            dcc = [
                v - b
                for v, b in zip(
                    results["Django + django-cookie-consent, accepted"],
                    results[base_name],
                    strict=True,
                )
            ]
            dcc_added = sorted(dcc)[len(dcc) // 2]
        for name in names[1:]:
            goal = None
            if label == FLASK and "consentmw" in name and "tracking" not in name:
                goal = Goal("added", round(base_med * 0.10, 2), text="≤ 10% of hello")
            if label == DJANGO and "consentmw" in name and dcc_added is not None:
                goal = Goal(
                    "added", round(dcc_added / 4, 2), text="≤ 1/4 of django-cookie-consent's"
                )
            rows.append(
                row(
                    label,
                    name,
                    results[name],
                    baseline=base,
                    goal=goal,
                    note=integration if "consentmw" in name else "",
                )
            )
        if label == DJANGO and not any("consentmw" in n for n in names):
            rows[-1].note = integration
    if notes and rows:
        rows[-1].note = "; ".join(filter(None, [rows[-1].note, *notes]))
    elif notes:
        raise SkipSection("; ".join(notes))
    return rows


def section(
    *, quick: bool, rounds: int, progress: Callable[[str], None] | None = None
) -> list[Row]:
    return run(300 if quick else 1500, rounds, progress)
