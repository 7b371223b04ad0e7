"""Each example runs, the way its README says, and does what it claims; the MODX configuration
passes ``consentmw check`` and shares one consent across the modx.com subdomains."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.test import Client

from consentmw import Config, ConsentMiddleware, MemorySink, open_sink
from consentmw.cli import main as cli

from .conftest import EXAMPLES, TEST_KEY, load_example

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "CF-IPCountry": "DE"}


def choose(client: Client, choice: str, *purposes: str, **kwargs: Any) -> Any:
    token = client.get("/_consent", headers=SAME_ORIGIN, **kwargs).get_json()["csrf"]
    form = [("choice", choice), ("csrf", token)] + [("purpose", p) for p in purposes]
    return client.post("/_consent", data=MultiDict(form), headers=SAME_ORIGIN, **kwargs)


# -------------------------------------------------------------------- the configuration


def test_the_modx_configuration_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["check", "--config", str(EXAMPLES / "consentmw.toml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "__Secure-cmw_prefs" in out


def test_the_modx_configuration_needs_its_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONSENTMW_SECRET_KEYS")
    assert cli(["check", "--config", str(EXAMPLES / "consentmw.toml")]) == 2
    assert "CONSENTMW_SECRET_KEYS" in capsys.readouterr().err


def test_the_modx_configuration_encodes_the_policy() -> None:
    config = Config.load(EXAMPLES / "consentmw.toml")
    assert config.policy.model == "notice"
    assert config.required == {"necessary", "security"}
    assert {"analytics", "updates", "marketing", "support"} <= config.purpose_ids
    assert config.jurisdictions.model_for("DE", "notice") == "opt-in"
    assert config.jurisdictions.model_for("US-CA", "notice") == "opt-out"
    assert config.jurisdictions.model_for("US-NY", "notice") == "notice"
    assert config.cookie_settings.domain == ".modx.com"
    assert config.resolve.domain_purpose == "analytics"
    assert set(config.resolve.pii_fields) >= {"phone", "card_number", "billing_address"}
    actions = {rule.name for rule in config.tracking.actions}
    assert actions == {
        "download",
        "bug_report",
        "suggestion",
        "forum_post",
        "support_ticket",
        "contact_form",
        "purchase",
        "area_visit",
        "login",
        "logout",
        "referral",
    }


def test_one_consent_across_the_modx_subdomains() -> None:
    with (EXAMPLES / "consentmw.toml").open("rb") as handle:
        data = tomllib.load(handle)  # as deployed: Secure cookies, Domain=.modx.com
    data["sinks"] = {"events": ["memory://"]}
    data["dispatch"] = {"spool": ""}
    data["resolve"]["reverse_dns"] = False

    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html><body>page</body></html>"]

    middleware = ConsentMiddleware(page, data, sinks={"memory://": MemorySink()})
    try:
        browser = Client(middleware)
        shop, forums = "https://shop.modx.com", "https://forums.modx.com"
        assert choose(browser, "accept_all", base_url=shop).status_code == 303
        prefs = browser.get_cookie("__Secure-cmw_prefs", domain="modx.com")
        assert prefs is not None
        assert prefs.secure
        state = browser.get("/_consent", base_url=forums, headers=SAME_ORIGIN).get_json()
        assert state["decided"] is True
        assert "analytics" in state["granted"]
        assert 'id="cmw-banner"' not in browser.get("/", base_url=forums).text
        # Sessions stay with the host that started them.
        shop_session = browser.get_cookie("__Host-cmw_session", domain="shop.modx.com")
        forums_session = browser.get_cookie("__Host-cmw_session", domain="forums.modx.com")
        assert shop_session is not None
        assert forums_session is not None
        assert shop_session.value != forums_session.value
    finally:
        middleware.close(timeout=5)


# --------------------------------------------------------------------------- wsgi_site


def test_wsgi_site_self_test_from_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONSENTMW_SECRET_KEYS"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "wsgi_site.py"), "--self-test"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "throwaway key" in done.stdout
    assert "self-test passed" in done.stdout
    assert "FAILED" not in done.stdout
    assert list(tmp_path.iterdir()) == []  # nothing left where it ran


def test_wsgi_site_self_test_fails_when_a_check_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    site = load_example("wsgi_site.py")
    monkeypatch.setattr(site, "DOWNLOADS", {})  # the download the self-test asks for is gone
    assert site.main(["--self-test"]) == 1


def test_wsgi_site_records_forms_and_areas(tmp_path: Path) -> None:
    middleware = load_example("wsgi_site.py").make_app(tmp_path)
    try:
        client = Client(middleware)
        choose(client, "accept_all")
        client.post(
            "/contact",
            data={"email": "Bob@Example.test", "phone": "+1 (555) 010-9999", "subject": "hi"},
            headers=SAME_ORIGIN,
        )
        client.post("/bugs/new", data={"email": "bob@example.test"}, headers=SAME_ORIGIN)
        client.get("/extras/gallery", headers=SAME_ORIGIN)
        assert middleware.flush(10)
        sink = middleware.sinks[middleware.config.sinks.events[0]]
        actions = {e.name: e for e in sink.query(type="action")}
        assert set(actions) == {"contact_form", "bug_report", "area_visit"}
        contact = actions["contact_form"]
        assert contact.email == "bob@example.test"
        assert contact.props["subject"] == "hi"
        assert contact.props["phone"] == "+15550109999"  # kept for support, normalised
        assert "support" in contact.purposes
    finally:
        middleware.close(timeout=10)


# -------------------------------------------------------------------------- flask_shop


def test_flask_shop_cart_login_checkout_and_downloads(tmp_path: Path) -> None:
    app = load_example("flask_shop/app.py").create_app(tmp_path)
    middleware = app.extensions["consentmw"].middleware(app)
    try:
        client = Client(app)
        first = client.get("/", headers=SAME_ORIGIN)
        assert first.text.count('id="cmw-banner"') == 1
        assert 'data-src="/static/analytics.js"' in first.text  # gated until granted
        assert choose(client, "accept_all").status_code == 303
        page = client.get("/?utm_source=newsletter", headers=SAME_ORIGIN)
        assert 'src="/static/analytics.js"' in page.text
        assert "Thank you for helping us" in page.text
        assert client.get_cookie("promo_source") is not None
        client.post("/cart/add", data={"sku": "extras-pack"}, headers=SAME_ORIGIN)
        client.post("/cart/add", data={"sku": "extras-pack"}, headers=SAME_ORIGIN)
        assert "Extras pack \u00d7 2" in client.get("/cart", headers=SAME_ORIGIN).text
        login = client.post(
            "/login",
            data={"email": "alice@example.com", "password": "modx-shop"},
            headers=SAME_ORIGIN,
        )
        assert login.status_code == 302
        bought = client.post(
            "/shop/checkout",
            data={
                "email": "alice@example.com",
                "amount": "98.00",
                "items": "extras-pack",
                "card_number": "4242 4242 4242 4242",
                "billing_address": "1 Main St",
            },
            headers=SAME_ORIGIN,
        )
        assert "Order 1" in bought.text
        assert "Cart (0)" in client.get("/", headers=SAME_ORIGIN).text
        assert client.get("/downloads/modx-2.3.2.zip", headers=SAME_ORIGIN).status_code == 200
        client.post("/logout", headers=SAME_ORIGIN)
        assert middleware.flush(10)
        sink = middleware.sinks[middleware.config.sinks.events[0]]
        actions = {e.name: e for e in sink.query(type="action")}
        assert {"purchase", "download", "login", "logout"} <= set(actions)
        purchase = actions["purchase"]
        assert purchase.email == "alice@example.com"
        assert "4242 4242 4242 4242" not in json.dumps(purchase.to_dict())
        assert "4242" in json.dumps(purchase.props["card_number"])
        assert purchase.props["billing_address"] == "1 Main St"
        # Signed in, the events carry the user's address (Flask-Login).
        assert actions["download"].email == "alice@example.com"
    finally:
        middleware.close(timeout=10)


# ------------------------------------------------------------------------ django_forum


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def forum(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``manage.py runserver`` of the forum example, as its README says, on a free port."""
    port = _free_port()
    env = {**os.environ, "FORUM_DATA_DIR": str(tmp_path), "CONSENTMW_SECRET_KEYS": TEST_KEY}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    server = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "django_forum" / "manage.py"),
            "runserver",
            f"127.0.0.1:{port}",
            "--noreload",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.stdout else ""
                    pytest.fail(f"the forum did not start:\n{output}")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout:
            server.stdout.close()


class Browser:
    """Enough of a browser for the forum: cookies, same-origin headers, no redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def request(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(self.base + path, data=data)
        # urllib's own User-Agent is a bot's, and bots are not tracked (tracking.ignore_bots).
        request.add_header("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
        request.add_header("CF-IPCountry", "DE")
        request.add_header("Sec-Fetch-Site", "same-origin")
        request.add_header("Origin", self.base)
        request.add_header("Referer", self.base + "/")
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def django_csrf(self, path: str) -> str:
        status, page = self.request(path)
        assert status == 200, page
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert found is not None
        return found.group(1)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.slow
def test_django_forum_runs_with_one_command(forum: tuple[str, Path]) -> None:
    base, data_dir = forum
    browser = Browser(base)
    status, home = browser.request("/")
    assert status == 200
    assert home.count('id="cmw-banner"') == 1
    assert home.count('class="cmw-settings"') == 1
    assert "not kept in your support history" in home

    state = json.loads(browser.request("/_consent")[1])
    status, _ = browser.request(
        "/_consent", {"choice": "accept_all", "csrf": state["csrf"], "next": "/"}
    )
    assert status == 303
    status, home = browser.request("/")
    assert 'id="cmw-banner"' not in home
    assert "We keep your tickets" in home

    token = browser.django_csrf("/forums/general")
    status, _ = browser.request(
        "/forums/general/post",
        {"csrfmiddlewaretoken": token, "email": "Dana@Example.test", "body": "Hello MODX"},
    )
    assert status == 302
    assert "Hello MODX" in browser.request("/forums/general")[1]
    token = browser.django_csrf("/support/")
    status, _ = browser.request(
        "/support/tickets/new",
        {
            "csrfmiddlewaretoken": token,
            "email": "dana@example.test",
            "phone": "+49 30 1234567",
            "subject": "Upgrade",
            "body": "help",
        },
    )
    assert status == 302
    # Django's CSRF still guards the forum's own forms.
    assert browser.request("/forums/general/post", {"email": "x@y.z", "body": "x"})[0] == 403

    sink = open_sink("sqlite:///" + str(data_dir / "events.db"))
    try:
        deadline = time.monotonic() + 20
        names: dict[str, Any] = {}
        while time.monotonic() < deadline and not {"forum_post", "support_ticket"} <= set(names):
            time.sleep(0.2)
            names = {e.name: e for e in sink.query(type="action")}  # type: ignore[attr-defined]
        assert names["forum_post"].email == "dana@example.test"
        ticket = names["support_ticket"]
        assert ticket.props["subject"] == "Upgrade"
        assert ticket.props["phone"] == "+49301234567"
        assert "support" in ticket.purposes
    finally:
        sink.close()


def test_django_forum_passes_its_checks(tmp_path: Path) -> None:
    env = {**os.environ, "FORUM_DATA_DIR": str(tmp_path), "CONSENTMW_SECRET_KEYS": TEST_KEY}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "django_forum" / "manage.py"), "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
