"""consentmw's own pages under the mount: preferences, policy, assets, problems, routing,
and /.well-known/gpc.json."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import pytest

from consentmw import ConfigError
from consentmw.endpoints import Response

from .conftest import SAME_ORIGIN, Site, Tags


def test_preferences_page_reflects_the_state(make_site: Callable[..., Site]) -> None:
    site = make_site()
    page = site.get("/_consent/preferences")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    text = page.get_data(as_text=True)
    assert "You have not made a choice yet." in text
    tags = Tags(text)
    boxes = {b["value"]: b for b in tags.find("input", type="checkbox")}
    assert "checked" in boxes["necessary"]
    assert "disabled" in boxes["necessary"]
    assert "checked" not in boxes["analytics"]
    assert "checked" not in boxes["marketing"]
    # Every purpose's declared cookies are listed with it.
    assert "<code>_ga*</code>" in text
    assert "<code>promo</code>" in text
    assert "<code>cmw_prefs</code>" in text
    assert "390 days" in text
    site.decide("custom", ["analytics"])
    text = site.get("/_consent/preferences").get_data(as_text=True)
    tags = Tags(text)
    boxes = {b["value"]: b for b in tags.find("input", type="checkbox")}
    assert "checked" in boxes["analytics"]
    assert "checked" not in boxes["marketing"]
    stored = site.mw.engine.prefs_signer.loads(site.client.get_cookie("cmw_prefs").value, 1e9)
    receipt = stored.payload["cid"]
    assert f"<code>{receipt}</code>" in text
    assert "policy version 2014-12-12" in text


def test_preferences_forms_post_a_custom_choice_and_one_step_withdrawal(
    make_site: Callable[..., Site],
) -> None:
    site = make_site()
    site.decide("accept_all")
    site.client.set_cookie("_ga_X", "1")
    tags = Tags(site.get("/_consent/preferences?next=/shop").get_data(as_text=True))
    prefs = tags.find("form", id="cmw-prefs")[0]
    every = tags.find("form", id="cmw-all")[0]
    assert prefs["method"] == every["method"] == "post"
    assert prefs["action"] == every["action"] == "/_consent"
    buttons = {b["value"]: b for b in tags.find("button")}
    assert "form" not in buttons["custom"]
    assert buttons["reject_all"]["form"] == buttons["accept_all"]["form"] == "cmw-all"
    csrf = tags.find("input", name="csrf")[0]["value"]
    assert {a["value"] for a in tags.find("input", name="next")} == {"/shop"}
    # Withdraw everything in one step: the analytics cookie is expired on the way.
    response = site.client.post(
        "/_consent",
        data={"choice": "reject_all", "csrf": csrf, "next": "/shop"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/shop")
    expired = [v for v in response.headers.getlist("Set-Cookie") if v.startswith("_ga_X=")]
    assert expired
    assert all("Max-Age=0" in v for v in expired)
    text = site.get("/_consent/preferences").get_data(as_text=True)
    assert "checked" not in Tags(text).find("input", value="analytics")[0]


def test_preferences_saved_notice_and_default_next(make_site: Callable[..., Site]) -> None:
    site = make_site()
    tags = Tags(site.get("/_consent/preferences").get_data(as_text=True))
    assert {a["value"] for a in tags.find("input", name="next")} == {
        "/_consent/preferences?saved=1"
    }
    site.decide("reject_all")
    text = site.get("/_consent/preferences?saved=1").get_data(as_text=True)
    assert "Your choices have been saved." in text


def test_preferences_refuses_a_foreign_next(make_site: Callable[..., Site]) -> None:
    site = make_site()
    text = site.get("/_consent/preferences?next=//evil.example/").get_data(as_text=True)
    assert "evil" not in text


def test_preferences_shows_the_gpc_status(make_site: Callable[..., Site]) -> None:
    site = make_site()
    text = site.get("/_consent/preferences", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    assert "Your browser sends a Global Privacy Control signal. It is honoured" in text
    box = Tags(text).find("input", value="marketing")[0]
    assert "disabled" in box
    assert "checked" not in box
    assert "does not send" in site.get("/_consent/preferences").get_data(as_text=True)


def test_policy_page(make_site: Callable[..., Site]) -> None:
    site = make_site()
    response = site.get("/_consent/policy", headers={"Accept-Language": "de"})
    assert response.status_code == 200
    text = html.unescape(response.get_data(as_text=True))
    assert "Cookie-Hinweis" in text
    assert "Werbung" in text
    assert "Richtlinie Version 2014-12-12" in text
    assert "2013-06-01" in text  # the history
    tags = Tags(response.get_data(as_text=True))
    assert tags.find("a", href="/privacy")
    rows = text.split("<tr>")
    ga = next(r for r in rows if "<code>_ga*</code>" in r)
    assert "Inhalte verbessern" in ga
    assert "390 Tage" in ga
    assert "Visitor id" in ga


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("consent.js", "text/javascript"),
        ("consent.css", "text/css"),
        ("consent-mode.js", "text/javascript"),
    ],
)
def test_assets(make_site: Callable[..., Site], name: str, content_type: str) -> None:
    site = make_site()
    plain = site.get(f"/_consent/assets/{name}")
    assert plain.status_code == 200
    assert plain.headers["Content-Type"].startswith(content_type)
    assert plain.headers["X-Content-Type-Options"] == "nosniff"
    assert "must-revalidate" in plain.headers["Cache-Control"]
    etag = plain.headers["ETag"]
    url = site.mw.engine.ui.assets.url(name)
    assert etag.strip('"') in url
    hashed = site.get(url)
    assert hashed.get_data() == plain.get_data()
    assert "immutable" in hashed.headers["Cache-Control"]
    assert "max-age=31536000" in hashed.headers["Cache-Control"]
    again = site.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert "Content-Length" not in again.headers  # RFC 9110 §8.6


@pytest.mark.parametrize(
    "path",
    [
        "/_consent/assets/",
        "/_consent/assets/nope.js",
        "/_consent/assets/../engine.py",
        "/_consent/assets/%2e%2e/__init__.py",
        "/_consent/assets/assets/consent.js",
        "/_consent/assets/consent.js/",
        "/_consent/nothing",
        "/_consent/preferences/x",
        "/_consent/policy/",
    ],
)
def test_unknown_paths_are_404(make_site: Callable[..., Site], path: str) -> None:
    response = make_site().get(path)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "path", ["/_consent/preferences", "/_consent/policy", "/_consent/assets/consent.js"]
)
def test_wrong_methods_are_405(make_site: Callable[..., Site], path: str) -> None:
    response = make_site().client.post(path, headers=SAME_ORIGIN)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


def test_head_is_allowed(make_site: Callable[..., Site]) -> None:
    response = make_site().client.head("/_consent/preferences")
    assert response.status_code == 200
    assert response.get_data() == b""


def test_extra_routes_can_be_registered(make_site: Callable[..., Site]) -> None:
    site = make_site()
    seen: list[tuple[str, str]] = []

    def optout(ctx: Any, rest: str, method: str, read_body: Any, scheme: str) -> Response:
        seen.append((rest, method))
        return Response.html("<p>opted out</p>")

    site.mw.engine.ui.routes["optout"] = optout
    response = site.get("/_consent/optout/abc.def")
    assert response.status_code == 200
    assert seen == [("/abc.def", "GET")]


def test_problem_page_keeps_the_status(make_site: Callable[..., Site]) -> None:
    site = make_site()
    site.get("/")
    response = site.client.post(
        "/_consent", data={"choice": "accept_all", "csrf": "forged"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "Your choice could not be saved" in text
    assert Tags(text).find("a", href="/_consent/preferences")
    bad = site.client.post("/_consent", data="x", content_type="text/plain", headers=SAME_ORIGIN)
    assert bad.status_code == 415
    assert "could not be saved" in bad.get_data(as_text=True)


def test_problem_page_for_an_unavailable_consent_log(make_site: Callable[..., Site]) -> None:
    site = make_site()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    site.mw.engine.consent_log.append_consent = broken  # type: ignore[method-assign]
    state = json.loads(site.get("/_consent").get_data(as_text=True))
    response = site.client.post(
        "/_consent", data={"choice": "accept_all", "csrf": state["csrf"]}, headers=SAME_ORIGIN
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


@pytest.mark.parametrize(
    ("version", "last_update"),
    [("2014-12-12", "2014-12-12"), ("7", None), ("2014-13-45", None)],
)
def test_gpc_well_known(
    make_site: Callable[..., Site], version: str, last_update: str | None
) -> None:
    site = make_site(policy={"version": version})
    response = site.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    doc = json.loads(response.get_data())
    expected: dict[str, Any] = {"gpc": True}
    if last_update:
        expected["lastUpdate"] = last_update
    assert doc == expected


def test_gpc_false_when_no_purpose_honours_it(make_site: Callable[..., Site]) -> None:
    site = make_site(purposes={"marketing": {"gpc_opt_out": False}})
    assert json.loads(site.get("/.well-known/gpc.json").get_data())["gpc"] is False


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"ui": {"texts": {"en": {"acept_all": "Yes"}}}}, "ui.texts.en.acept_all"),
        ({"ui": {"texts": {"EN!": {}}}}, "ui.texts.EN!"),
        ({"ui": {"script_gating": "yes"}}, "ui.script_gating"),
        ({"ui": {"csp_nonce_environ_key": " "}}, "ui.csp_nonce_environ_key"),
        ({"consent_mode": {"enabled": True}}, "consent_mode.enabled"),
        ({"consent_mode": {"ad_storage": ["nope"]}}, "consent_mode.ad_storage"),
    ],
)
def test_ui_configuration_errors(section: dict[str, Any], where: str) -> None:
    from consentmw import Config

    from .conftest import config

    with pytest.raises(ConfigError) as info:
        Config.load(config(**section))
    assert where in str(info.value)


def test_text_keys_match_the_shipped_texts() -> None:
    from consentmw.config import UIConfig
    from consentmw.ui.texts import BUILTIN

    for lang, texts in BUILTIN.items():
        assert set(texts) == set(UIConfig.TEXT_KEYS), lang
