"""The Django app and middleware: CSRF interplay, Django's own cookies, ``request.consentmw``,
the template tags, ``request.user.email``, streaming, GZip order and the system checks."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consentmw.cookies import CookieWriter

from .conftest import MIDDLEWARE, example_config

pytestmark = pytest.mark.usefixtures("django_project")

SAME_ORIGIN = {"HTTP_SEC_FETCH_SITE": "same-origin"}
OPT_IN = {"HTTP_CF_IPCOUNTRY": "DE"}


def client(**kwargs: Any) -> Any:
    from django.test import Client

    return Client(**kwargs)


def consent(c: Any, choice: str, *purposes: str, **extra: Any) -> Any:
    token = c.get("/_consent", **OPT_IN).json()["csrf"]
    data = {"choice": choice, "csrf": token, "next": "/"}
    if purposes:
        data["purpose"] = list(purposes)
    headers = {**SAME_ORIGIN, **OPT_IN, **extra}
    return c.post("/_consent", data, **headers)


@pytest.fixture
def engine(django_consent: Callable[..., Any], tmp_path: Path) -> Any:
    return django_consent(example_config(tmp_path))


# ------------------------------------------------------------------------------ CSRF


def test_django_csrf_still_guards_the_projects_views(engine: Any) -> None:
    c = client(enforce_csrf_checks=True)
    assert c.post("/form/", {"text": "hi"}, **OPT_IN).status_code == 403
    page = c.get("/form/", **OPT_IN)
    assert page.status_code == 200
    token = c.cookies["csrftoken"].value  # necessary: set before any consent
    answer = c.post("/form/", {"text": "hi", "csrfmiddlewaretoken": token}, **OPT_IN)
    assert answer.status_code == 200
    assert answer.content == b"posted hi"


def test_the_consent_endpoint_has_its_own_protection(engine: Any) -> None:
    c = client(enforce_csrf_checks=True)
    c.get("/", **OPT_IN)
    # No Django CSRF token: CsrfViewMiddleware never sees the endpoint.
    accepted = consent(c, "accept_all")
    assert accepted.status_code == 303
    assert c.get("/_consent", **OPT_IN).json()["decided"] is True
    # Cross-site, or without consentmw's token: refused by consentmw itself.
    token = c.get("/_consent", **OPT_IN).json()["csrf"]
    evil = c.post(
        "/_consent",
        {"choice": "reject_all", "csrf": token},
        HTTP_ORIGIN="https://evil.example",
        **OPT_IN,
    )
    assert evil.status_code == 403
    forged = c.post("/_consent", {"choice": "reject_all", "csrf": "forged"}, **SAME_ORIGIN)
    assert forged.status_code == 403
    assert c.get("/_consent", **OPT_IN).json()["granted"] != ["necessary", "security"]


# --------------------------------------------------------------------- Django's cookies


def test_djangos_cookies_are_necessary(engine: Any) -> None:
    c = client()
    assert "sessionid" in c.get("/session/", **OPT_IN).cookies
    assert "csrftoken" in c.get("/form/", **OPT_IN).cookies
    assert "django_language" in c.get("/language/", **OPT_IN).cookies
    assert "tracker" not in c.get("/undeclared/", **OPT_IN).cookies  # undeclared: blocked
    assert "site_visits" not in c.get("/", **OPT_IN).cookies  # analytics: not granted
    assert c.get("/session/", **OPT_IN).content == b"2"  # the session works


def test_a_raw_set_cookie_header_is_filtered_too(engine: Any) -> None:
    c = client()
    answer = c.get("/raw-header/", **OPT_IN)
    assert answer.status_code == 200 and not answer.has_header("Set-Cookie")
    assert "tracker" not in answer.cookies


def test_cookie_names_come_from_the_settings(
    django_consent: Callable[..., Any], tmp_path: Path
) -> None:
    engine = django_consent(example_config(tmp_path), LANGUAGE_COOKIE_NAME="lang")
    assert "lang" in engine._necessary
    assert "django_language" not in engine._necessary


def test_a_declared_framework_cookie_follows_its_declaration(
    django_consent: Callable[..., Any], tmp_path: Path
) -> None:
    config = example_config(tmp_path)
    config["cookies"].append({"name": "django_language", "purpose": "updates"})
    django_consent(config)
    c = client()
    assert "django_language" not in c.get("/language/", **OPT_IN).cookies
    consent(c, "custom", "updates")
    assert "django_language" in c.get("/language/", **OPT_IN).cookies


# -------------------------------------------------------------- context, tags, e-mail


def test_request_consentmw_is_the_context(engine: Any) -> None:
    assert client().get("/context/").content == b"True"


def test_template_tags(engine: Any) -> None:
    c = client()
    page = c.get("/tags/", **OPT_IN).content.decode()
    assert page.count('id="cmw-banner"') == 1
    assert page.count('class="cmw-settings"') == 1
    assert page.index('class="cmw-settings"') < page.index("</footer>")
    assert 'id="analytics-off"' in page
    consent(c, "custom", "analytics")
    page = c.get("/tags/", **OPT_IN).content.decode()
    assert 'id="cmw-banner"' not in page
    assert 'id="analytics-on"' in page


def test_consent_allows_checks_literal_purposes_when_compiled(engine: Any) -> None:
    from django.template import Context, Template, TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match="unknown purpose 'ads'"):
        Template('{% load consentmw %}{% consent_allows "ads" %}x{% endconsent_allows %}')
    with pytest.raises(TemplateSyntaxError, match="one purpose"):
        Template("{% load consentmw %}{% consent_allows %}x{% endconsent_allows %}")
    dynamic = Template(
        "{% load consentmw %}{% consent_allows name %}yes{% else %}no{% endconsent_allows %}"
        "[{% consent_banner %}{% consent_settings_link %}]"
    )
    # Without a request (or without the middleware): false, and no markup.
    assert dynamic.render(Context({"name": "analytics"})) == "no[]"


def test_signed_in_users_email_is_the_visitors(engine: Any) -> None:
    from django.contrib.auth.models import User

    user = User.objects.create_user("carol", "Carol@Example.TEST", "pw")
    c = client()
    c.force_login(user)
    assert c.get("/record/", **OPT_IN).content == b"no"
    consent(c, "custom", "analytics")
    assert c.get("/record/", **OPT_IN).content == b"yes"
    c.logout()
    c.get("/record/", **OPT_IN)
    assert engine.dispatcher.flush(10)
    sink = engine.sinks[engine.config.sinks.events[0]]
    emails = [e.email for e in sink.query(type="action") if e.name == "forum_visit"]
    assert emails == ["carol@example.test"]
    [decision] = list(sink.query(type="consent"))
    assert decision.email == "carol@example.test"
    user.delete()


# -------------------------------------------------------------------- responses


def test_streaming_responses_stay_streaming(engine: Any) -> None:
    from django.test import RequestFactory

    c = client()
    response = c.get("/stream/", **OPT_IN)
    assert response.streaming
    assert not response.has_header("Content-Length")
    body = b"".join(response.streaming_content).decode()
    assert body.count('id="cmw-banner"') == 1
    assert body.index("part 2") < body.index('id="cmw-banner"') < body.index("</body>")
    # Nothing is read before the server iterates.
    from consentmw.django import ConsentMiddleware
    from tests.integrations.djangoproject.views import stream

    request = RequestFactory().get("/stream/", **OPT_IN)
    wrapped = ConsentMiddleware(stream)(request)
    assert wrapped.streaming
    assert request.META["test.produced"] == []
    first = next(iter(wrapped.streaming_content))
    assert b"part 0" in first
    assert request.META["test.produced"] == [0]


def test_gzip_outside_compresses_the_page_with_the_banner(engine: Any) -> None:
    response = client().get("/long/", HTTP_ACCEPT_ENCODING="gzip", **OPT_IN)
    assert response["Content-Encoding"] == "gzip"
    assert b'id="cmw-banner"' in gzip.decompress(response.content)


def test_gzip_inside_means_no_banner(engine: Any) -> None:
    from django.test import override_settings

    gzip_last = [m for m in MIDDLEWARE if "gzip" not in m] + [
        "django.middleware.gzip.GZipMiddleware"
    ]
    with override_settings(MIDDLEWARE=gzip_last):
        response = client().get("/long/", HTTP_ACCEPT_ENCODING="gzip", **OPT_IN)
        from consentmw.django.checks import check_middleware

        assert [m.id for m in check_middleware()] == ["consentmw.W003"]
    assert response["Content-Encoding"] == "gzip"
    page = gzip.decompress(response.content)
    assert b"Long words" in page
    assert b'id="cmw-banner"' not in page


def test_endpoints_render_to_django_responses(engine: Any) -> None:
    c = client()
    state = c.get("/_consent", **OPT_IN)
    assert state["Content-Type"] == "application/json"
    assert "Cookie" in state["Vary"]
    assert state.json()["model"] == "opt-in"
    head = c.head("/_consent", **OPT_IN)
    assert head.content == b""
    assert int(head["Content-Length"]) > 0
    assert c.get("/.well-known/gpc.json").json()["gpc"] is True
    page = c.get("/_consent/preferences", **OPT_IN)
    assert page.status_code == 200
    assert "default-src 'none'" in page["Content-Security-Policy"]
    assert c.get("/_consent/nothing-here").status_code == 404


def test_withdrawal_deletes_every_copy_of_the_cookie(engine: Any) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from werkzeug.test import Client

    browser = Client(WSGIHandler())
    headers = {"CF-IPCountry": "DE", "Sec-Fetch-Site": "same-origin"}
    host = "forums.modx.com"
    base = f"http://{host}"
    token = browser.get("/_consent", base_url=base, headers=headers).get_json()["csrf"]
    browser.post(
        "/_consent",
        base_url=base,
        data={"choice": "accept_all", "csrf": token},
        headers=headers,
    )
    browser.set_cookie("site_visits", "3", domain=host)
    token = browser.get("/_consent", base_url=base, headers=headers).get_json()["csrf"]
    withdrawn = browser.post(
        "/_consent", base_url=base, data={"choice": "reject_all", "csrf": token}, headers=headers
    )
    expiries = [
        v.strip()
        for v in withdrawn.headers.getlist("Set-Cookie")
        if v.strip().startswith("site_visits=")
    ]
    # Host-only, and each parent domain the browser may have been given it for.
    domains = sorted(
        next((a.split("=")[1] for a in v.split("; ") if a.startswith("Domain=")), "")
        for v in expiries
    )
    assert domains == ["", "forums.modx.com", "modx.com"]
    assert all("Max-Age=0" in v for v in expiries)


def test_cookie_specs_render_with_identical_attributes() -> None:
    from django.http import HttpResponse

    from consentmw.django.middleware import render_cookie

    writer = CookieWriter(secure=True, samesite="Strict", path="/", domain=".modx.com")
    response = HttpResponse()
    render_cookie(response, writer.cookie("__Secure-cmw_prefs", "v.s", max_age=60, shared=True))
    deletion = HttpResponse()
    render_cookie(deletion, writer.deletion("__Secure-cmw_prefs", shared=True))

    def attributes(morsel: Any) -> dict[str, Any]:
        keys = ("path", "domain", "secure", "httponly", "samesite")
        return {k: morsel[k] for k in keys}

    kept = response.cookies["__Secure-cmw_prefs"]
    gone = deletion.cookies["__Secure-cmw_prefs"]
    assert attributes(kept) == attributes(gone)
    assert attributes(kept) == {
        "path": "/",
        "domain": ".modx.com",
        "secure": True,
        "httponly": True,
        "samesite": "Strict",
    }
    assert kept["max-age"] == 60
    assert gone["max-age"] == 0
    assert gone["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    # The WSGI rendering of the same spec says the same.
    header = writer.cookie("__Secure-cmw_prefs", "v.s", max_age=60, shared=True).header()
    assert "Domain=modx.com" in header or "Domain=.modx.com" in header
    assert "SameSite=Strict" in header and "Secure" in header and "HttpOnly" in header


def test_a_failure_keeps_only_necessary_cookies(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "finish_response", broken)
    c = client()
    response = c.get("/session/", **OPT_IN)
    assert response.status_code == 200
    assert "sessionid" in response.cookies
    assert "site_visits" not in c.get("/", **OPT_IN).cookies


# --------------------------------------------------------------------- set-up


def test_the_engine_follows_the_settings(
    django_consent: Callable[..., Any], tmp_path: Path
) -> None:
    from consentmw.django import get_engine

    first = django_consent(example_config(tmp_path / "a", site="a.modx.com"))
    assert get_engine() is first
    second = django_consent(example_config(tmp_path / "b", site="b.modx.com"))
    assert second is not first
    assert get_engine().config.site.name == "b.modx.com"


def test_the_middleware_needs_the_app(django_project: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from consentmw.django import ConsentMiddleware

    apps = [a for a in django_project.INSTALLED_APPS if a != "consentmw.django"]
    with (
        override_settings(INSTALLED_APPS=apps),
        pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"),
    ):
        ConsentMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]


# ---------------------------------------------------------------------- checks


def run(*tags: str) -> list[str]:
    from django.core.checks import run_checks

    return sorted(m.id for m in run_checks(tags=list(tags) or ["consentmw"]) if m.id)


def test_checks_pass_for_the_test_project(engine: Any) -> None:
    from django.test import override_settings

    with override_settings(DEBUG=True):
        assert run() == []


def test_check_missing_or_invalid_configuration(django_project: Any) -> None:
    from django.test import override_settings

    from consentmw.django.checks import check_configuration

    with override_settings(CONSENTMW=None):
        [missing] = check_configuration()
        assert missing.id == "consentmw.E001"
        assert "CONSENTMW" in missing.msg
    broken = default_without_keys()
    with override_settings(CONSENTMW=broken):
        [invalid] = check_configuration()
        assert invalid.id == "consentmw.E001"
        assert invalid.obj == "site.secret_keys"
        assert invalid.hint == "this key is required"


def default_without_keys() -> dict[str, Any]:
    from consentmw.testing import default_config

    config = default_config()
    del config["site"]["secret_keys"]
    return config


def test_check_insecure_cookies_in_production(engine: Any, tmp_path: Path) -> None:
    from django.test import override_settings

    with override_settings(DEBUG=False):
        assert "consentmw.W001" in run()
    secure = example_config(tmp_path)
    secure["cookie_settings"]["secure"] = True
    with override_settings(DEBUG=False, CONSENTMW=secure):
        assert "consentmw.W001" not in run()


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        pytest.param(MIDDLEWARE, [], id="recommended"),
        pytest.param(
            [m for m in MIDDLEWARE if "consentmw" not in m], ["consentmw.W002"], id="missing"
        ),
        pytest.param(
            [m for m in MIDDLEWARE if "Authentication" not in m]
            + ["django.contrib.auth.middleware.AuthenticationMiddleware"],
            ["consentmw.W004"],
            id="auth-inside",
        ),
    ],
)
def test_check_middleware_order(
    django_project: Any, middleware: list[str], expected: list[str]
) -> None:
    from django.test import override_settings

    from consentmw.django.checks import check_middleware

    with override_settings(MIDDLEWARE=middleware):
        assert [m.id for m in check_middleware()] == expected


def test_check_unknown_purposes_in_templates(engine: Any, tmp_path: Path) -> None:
    from django.conf import settings
    from django.test import override_settings

    templates = tmp_path / "templates"
    (templates / "forum").mkdir(parents=True)
    (templates / "forum" / "page.html").write_text(
        '{% load consentmw %}\n{% consent_allows "analytics" %}ok{% endconsent_allows %}\n'
        '{% consent_allows "ads" %}no{% endconsent_allows %}\n'
        '<script data-consent="tracking" src="/t.js"></script>\n',
        encoding="utf-8",
    )
    (templates / "page.jinja").write_text('{% if consent.allows("newsletter") %}{% endif %}')
    backend = dict(settings.TEMPLATES[0], DIRS=[str(templates)])
    with override_settings(TEMPLATES=[backend]):
        from consentmw.django.checks import check_templates

        found = check_templates()
    assert [m.id for m in found] == ["consentmw.E002"] * 3
    text = " ".join(m.msg for m in found)
    assert "'ads'" in text and "'tracking'" in text and "'newsletter'" in text
    assert "page.html:3" in text
    without_request = dict(backend, OPTIONS={"context_processors": []})
    with override_settings(TEMPLATES=[without_request]):
        assert "consentmw.W005" in [m.id for m in check_templates()]
