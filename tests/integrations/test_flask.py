"""The Flask extension: set-up, configuration sources, Flask's session, the Jinja globals and
the Flask-Login e-mail address."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_login
import pytest
from flask import Flask, render_template_string, session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

import consentmw
from consentmw import ConfigError, ConsentMWError, MemorySink, get_context
from consentmw.flask import Consent, context, load_config
from consentmw.testing import default_config

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
TEMPLATE = (
    "<!doctype html><html><body>"
    "{% if consent.allows('analytics') %}<p id=on>on</p>{% else %}<p id=off>off</p>{% endif %}"
    "<footer>{{ consent_settings_link() }}</footer>{{ consent_banner() }}</body></html>"
)


def text(body: str) -> Any:
    return Response(body, content_type="text/plain")


def make_app(config: dict[str, Any] | None = None, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "flask-tests-" + "s" * 32
    app.config["CONSENTMW"] = config or default_config()

    @app.get("/")
    def index() -> str:
        session["visits"] = session.get("visits", 0) + 1
        return render_template_string(TEMPLATE)

    @app.get("/plain")
    def plain() -> str:
        return "<!doctype html><html><body><p>plain</p></body></html>"

    @app.get("/bump")
    def bump() -> Any:
        session["visits"] = session.get("visits", 0) + 1
        return text(str(session["visits"]))

    @app.get("/count")
    def count() -> Any:
        return text(str(session.get("visits", 0)))

    @app.post("/record")
    def record() -> Any:
        return text("yes" if context().record("purchase", total=12) else "no")

    return app


@pytest.fixture
def apps() -> Iterator[list[Consent]]:
    made: list[Consent] = []
    yield made
    for consent in made:
        consent.close(timeout=5)


def setup(app: Flask, apps: list[Consent], **options: Any) -> Consent:
    options.setdefault("sinks", {"memory://": MemorySink()})
    consent = Consent(app, **options)
    apps.append(consent)
    return consent


def choose(client: Any, choice: str, *purposes: str) -> Any:
    token = client.get("/_consent", headers=SAME_ORIGIN).get_json()["csrf"]
    form = [("choice", choice), ("csrf", token)] + [("purpose", p) for p in purposes]
    return client.post("/_consent", data=MultiDict(form), headers=SAME_ORIGIN)


def cookie_names(response: Any) -> list[str]:
    return [v.split("=", 1)[0].strip() for v in response.headers.getlist("Set-Cookie")]


# ------------------------------------------------------------------------------ set-up


def test_init_app_wraps_wsgi_app_and_registers_the_extension(apps: list[Consent]) -> None:
    app = make_app()
    original = app.wsgi_app
    consent = setup(app, apps)
    assert app.extensions["consentmw"] is consent
    assert isinstance(app.wsgi_app, consentmw.ConsentMiddleware)
    assert app.wsgi_app.app == original
    with app.app_context():
        assert consent.middleware() is app.wsgi_app
    with pytest.raises(RuntimeError, match="already"):
        consent.init_app(app)


def test_factory_pattern_one_extension_many_apps(apps: list[Consent]) -> None:
    consent = Consent(sinks={"memory://": MemorySink()})
    apps.append(consent)

    def create_app(name: str) -> Flask:
        data = default_config()
        data["site"]["name"] = name
        app = make_app(data)
        consent.init_app(app)
        return app

    shop, forum = create_app("shop.example.test"), create_app("forum.example.test")
    assert shop.extensions["consentmw"] is forum.extensions["consentmw"] is consent
    assert consent.middleware(shop) is not consent.middleware(forum)
    assert consent.middleware(shop).config.site.name == "shop.example.test"
    assert consent.middleware(forum).config.site.name == "forum.example.test"
    assert 'id="cmw-banner"' in shop.test_client().get("/").text
    with pytest.raises(ConsentMWError, match="not set up"):
        consent.middleware(make_app())


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param({}, "CONSENTMW", id="none"),
        pytest.param(
            {"CONSENTMW": default_config(), "CONSENTMW_CONFIG": "x.toml"}, "not both", id="both"
        ),
        pytest.param({"CONSENTMW": "consentmw.toml"}, "mapping", id="path-in-mapping-key"),
        pytest.param({"CONSENTMW_CONFIG": 42}, "path", id="not-a-path"),
        pytest.param({"CONSENTMW_CONFIG": "missing.toml"}, "cannot read", id="missing-file"),
    ],
)
def test_configuration_problems_are_config_errors(settings: dict[str, Any], problem: str) -> None:
    app = Flask(__name__)
    app.config.update(settings)
    with pytest.raises(ConfigError, match=problem):
        load_config(app)


def test_configuration_from_a_file_relative_to_the_root_path(tmp_path: Path) -> None:
    (tmp_path / "consentmw.toml").write_text(
        '[site]\nname = "file.example.test"\nsecret_keys = ["0123456789abcdef0123"]\n'
        '[purposes.necessary]\nrequired = true\n[sinks]\nevents = ["memory://"]\n',
        encoding="utf-8",
    )
    app = Flask(__name__, root_path=str(tmp_path))
    app.config["CONSENTMW_CONFIG"] = "consentmw.toml"
    assert load_config(app).site.name == "file.example.test"
    # The argument wins over the settings.
    app.config["CONSENTMW"] = {"ignored": True}
    assert load_config(app, tmp_path / "consentmw.toml").source.endswith("consentmw.toml")


def test_context_is_the_requests(apps: list[Consent]) -> None:
    app = make_app()
    setup(app, apps)
    with pytest.raises(ConsentMWError, match="active Flask request"):
        context()
    seen: list[Any] = []

    @app.get("/ctx")
    def ctx() -> str:
        from flask import request

        seen.append((context(), get_context(request.environ)))
        return "ok"

    app.test_client().get("/ctx")
    [(mine, wsgi)] = seen
    assert mine is wsgi


# ---------------------------------------------------------------------------- session


def test_flask_session_is_necessary_and_untouched(apps: list[Consent]) -> None:
    data = default_config()
    data["cookie_settings"]["undeclared"] = "block"
    bare = make_app(data)
    wrapped = make_app(data)
    setup(wrapped, apps)
    plain = bare.test_client().get("/bump").headers.getlist("Set-Cookie")
    client = wrapped.test_client()
    first = client.get("/bump")
    flask_cookies = [v for v in first.headers.getlist("Set-Cookie") if v.startswith("session=")]
    # Same attributes as without consentmw (the value carries a timestamp).
    assert [v.split(";", 1)[1] for v in flask_cookies] == [v.split(";", 1)[1] for v in plain]
    client.get("/bump")
    assert client.get("/count").text == "2"
    choose(client, "reject_all")
    assert client.get("/count").text == "2"
    assert "session" in cookie_names(client.get("/bump"))


def test_a_declared_session_cookie_follows_its_declaration(apps: list[Consent]) -> None:
    data = default_config()
    data["cookies"].append({"name": "session", "purpose": "analytics"})
    app = make_app(data)
    setup(app, apps)
    client = app.test_client()
    assert "session" not in cookie_names(client.get("/"))
    choose(client, "custom", "analytics")
    assert "session" in cookie_names(client.get("/"))


def test_undeclared_cookies_are_still_blocked(apps: list[Consent]) -> None:
    app = make_app()

    @app.get("/tracker")
    def tracker() -> Any:
        response = app.make_response("ok")
        response.set_cookie("tracker", "1")
        return response

    setup(app, apps)
    assert "tracker" not in cookie_names(app.test_client().get("/tracker"))


# ------------------------------------------------------------------------ Jinja globals


def test_jinja_globals_place_the_banner_and_link_once(apps: list[Consent]) -> None:
    app = make_app()
    setup(app, apps)
    client = app.test_client()
    page = client.get("/").text
    assert page.count('id="cmw-banner"') == 1
    assert page.count('class="cmw-settings"') == 1
    # Placed where the template put them, not appended before </body> again.
    assert page.index('class="cmw-settings"') < page.index("</footer>")
    assert "<p id=off>off</p>" in page
    other = client.get("/plain").text  # no template helpers: the middleware inserts them
    assert other.count('id="cmw-banner"') == 1
    assert other.count('class="cmw-settings"') == 1
    choose(client, "custom", "analytics")
    decided = client.get("/")
    assert 'id="cmw-banner"' not in decided.text
    assert "<p id=on>on</p>" in decided.text
    assert "Cookie" in decided.headers["Vary"]


def test_only_the_link_placed_still_gets_the_banner_inserted(apps: list[Consent]) -> None:
    app = make_app()

    @app.get("/link")
    def link() -> str:
        return render_template_string(
            "<html><body><nav>{{ consent_settings_link() }}</nav></body></html>"
        )

    setup(app, apps)
    page = app.test_client().get("/link").text
    assert page.count('class="cmw-settings"') == 1
    assert page.count('id="cmw-banner"') == 1
    assert page.index("cmw-settings") < page.index("</nav>") < page.index("cmw-banner")


def test_jinja_globals_outside_a_request(apps: list[Consent]) -> None:
    app = make_app()
    setup(app, apps)
    with app.app_context():
        assert render_template_string("[{{ consent_banner() }}]") == "[]"
        with pytest.raises(ConsentMWError):
            render_template_string("{{ consent.allows('analytics') }}")


# ------------------------------------------------------------------------- Flask-Login


class User(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, email: str) -> None:
        self.id = email
        self.email = email


def login_app(apps: list[Consent], config: dict[str, Any] | None = None) -> tuple[Flask, Any]:
    app = make_app(config)
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    @app.post("/login")
    def login() -> str:
        flask_login.login_user(User("Alice@Example.COM"))
        return "in"

    sink = MemorySink()
    consent = setup(app, apps, sinks={"memory://": sink})
    return app, (consent, sink)


def test_flask_login_user_email_is_the_visitors(apps: list[Consent]) -> None:
    app, (consent, sink) = login_app(apps)
    client = app.test_client()
    client.post("/login")
    assert client.post("/record").text == "no"  # opt-in: nothing before consent
    choose(client, "custom", "analytics")
    assert client.post("/record").text == "yes"
    assert consent.flush(app=app)
    [purchase] = [e for e in sink.events if e.name == "purchase"]
    assert purchase.email == "alice@example.com"
    assert all(e.email is None for e in sink.events if "analytics" not in e.purposes)


def test_no_email_when_signed_out_or_without_login_manager(apps: list[Consent]) -> None:
    app, (consent, sink) = login_app(apps)
    client = app.test_client()
    choose(client, "custom", "analytics")
    client.post("/record")
    plain = make_app()
    plain_sink = MemorySink()
    other = setup(plain, apps, sinks={"memory://": plain_sink})
    plain_client = plain.test_client()
    choose(plain_client, "custom", "analytics")
    plain_client.post("/record")
    assert consent.flush(app=app)
    assert other.flush(app=plain)
    assert [e.email for e in sink.events + plain_sink.events if e.name == "purchase"] == [
        None,
        None,
    ]


def test_a_configured_email_hook_wins(apps: list[Consent]) -> None:
    data = default_config()
    data["resolve"] = {"email_hook": "tests.integrations.hooks:fixed_email"}
    app, (consent, sink) = login_app(apps, data)
    client = app.test_client()
    client.post("/login")
    choose(client, "custom", "analytics")
    client.post("/record")
    assert consent.flush(app=app)
    [purchase] = [e for e in sink.events if e.name == "purchase"]
    assert purchase.email == "hook@example.test"


def test_remember_cookie_is_declared_necessary(apps: list[Consent]) -> None:
    app, _ = login_app(apps)

    @app.post("/remember")
    def remember() -> str:
        flask_login.login_user(User("bob@example.test"), remember=True)
        return "in"

    names = cookie_names(app.test_client().post("/remember"))
    assert "remember_token" in names
    assert "session" in names
