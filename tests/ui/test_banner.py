"""The banner and the settings link: when they show, what they contain, and that the
injected markup is accessible, escaped and runs under a strict CSP."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable

import pytest

from consentmw.ui.render import BannerView, banner
from consentmw.ui.texts import texts_for

from .conftest import BASE, SAME_ORIGIN, Site, Tags, config, html_app

BANNER = b'id="cmw-banner"'


def page_tags(site: Site, path: str = "/", **kwargs: object) -> Tags:
    return Tags(site.get(path, **kwargs).get_data(as_text=True))


def injected(site: Site, **kwargs: object) -> str:
    """The markup the middleware added to the test page."""
    data = site.get("/", **kwargs).get_data(as_text=True)
    return data[data.index("<p>Hello</p>") + len("<p>Hello</p>") : data.index("</body>")]


# ------------------------------------------------------------------ when it shows


def test_banner_shows_until_the_visitor_decides(make_site: Callable[..., Site]) -> None:
    site = make_site()
    assert BANNER in site.get("/").get_data()
    site.decide("reject_all")
    after = site.get("/").get_data()
    assert BANNER not in after
    assert b'class="cmw-settings"' in after


@pytest.mark.parametrize("choice", ["accept_all", "reject_all", "custom"])
def test_any_decision_hides_it(make_site: Callable[..., Site], choice: str) -> None:
    site = make_site()
    site.decide(choice, ["analytics"] if choice == "custom" else [])
    assert BANNER not in site.get("/").get_data()


def test_banner_returns_when_the_policy_version_changes(make_site: Callable[..., Site]) -> None:
    old = make_site()
    old.decide("accept_all")
    cookie = old.client.get_cookie("cmw_prefs")
    assert cookie is not None
    new = make_site(policy={"version": "2015-01-01"})
    new.client.set_cookie("cmw_prefs", cookie.value)
    data = new.get("/").get_data(as_text=True)
    assert 'id="cmw-banner"' in data
    assert "Our privacy policy has changed" in data


def test_notice_model_banner_shows_once(make_site: Callable[..., Site]) -> None:
    site = make_site(policy={"model": "notice"})
    first = site.get("/").get_data(as_text=True)
    assert 'id="cmw-banner"' in first
    assert "By continuing to use this site you accept" in first
    # Carrying on after the notice is the acceptance: no banner on the next page.
    assert BANNER not in site.get("/next").get_data()


def test_banner_can_be_turned_off(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"banner": False})
    data = site.get("/").get_data()
    assert BANNER not in data
    assert b'class="cmw-settings"' in data


def test_settings_link_can_be_turned_off(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"settings_link": False})
    site.decide("accept_all")
    assert b"cmw-settings" not in site.get("/").get_data()


# ------------------------------------------------------------------ what it contains


def test_three_equal_buttons_on_the_first_layer(make_site: Callable[..., Site]) -> None:
    tags = page_tags(make_site())
    first = [a for t, a in tags.tags if t == "button" and a.get("id") != "cmw-back"][:3]
    assert [a.get("value") or a.get("id") for a in first] == [
        "reject_all",
        "cmw-customise",
        "accept_all",
    ]
    # Same element, same classes, same type: none is more prominent than another.
    assert {a["class"] for a in first} == {"cmw-btn"}
    assert {a["type"] for a in first} == {"submit"}


def test_nothing_is_pre_ticked(make_site: Callable[..., Site]) -> None:
    tags = page_tags(make_site())
    boxes = tags.find("input", type="checkbox")
    assert {b["value"] for b in boxes} == {"necessary", "analytics", "marketing"}
    for box in boxes:
        if box["value"] == "necessary":
            assert "checked" in box
            assert "disabled" in box
        else:
            assert "checked" not in box


def test_the_forms_work_without_javascript(make_site: Callable[..., Site]) -> None:
    site = make_site()
    tags = page_tags(site, "/shop/item?id=3&x=%3C")
    forms = {f["id"]: f for f in tags.find("form")}
    assert forms["cmw-choice"]["method"] == "post"
    assert forms["cmw-choice"]["action"] == "/_consent"
    assert forms["cmw-panel"]["method"] == "post"
    assert forms["cmw-customise-form"]["method"] == "get"
    assert forms["cmw-customise-form"]["action"] == "/_consent/preferences"
    nexts = {a["value"] for a in tags.find("input", name="next")}
    assert nexts == {"/shop/item?id=3&x=%3C"}
    csrf = tags.find("input", name="csrf")[0]["value"]
    assert csrf
    # Posting the banner's own form as a browser without JavaScript would.
    response = site.client.post(
        "/_consent",
        data={"choice": "reject_all", "csrf": csrf, "next": "/shop/item?id=3&x=%3C"},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/shop/item?id=3&x=%3C")
    assert BANNER not in site.get("/").get_data()


def test_the_session_cookie_for_the_token_goes_out_with_the_banner(
    make_site: Callable[..., Site],
) -> None:
    site = make_site()
    response = site.get("/")
    assert any(v.startswith("cmw_session=") for v in response.headers.getlist("Set-Cookie"))


def test_accessible_dialog(make_site: Callable[..., Site]) -> None:
    tags = page_tags(make_site())
    dialog = tags.find("div", role="dialog")[0]
    assert dialog["aria-labelledby"] == "cmw-title"
    assert dialog["aria-describedby"] == "cmw-desc"
    assert dialog["tabindex"] == "-1"
    ids = {a.get("id") for _, a in tags.tags}
    assert {"cmw-title", "cmw-desc"} <= ids
    for box in tags.find("input", type="checkbox"):
        assert tags.find("label", **{"for": box["id"]})
    customise = tags.find("button", id="cmw-customise")[0]
    assert customise["aria-controls"] == "cmw-panel"
    assert customise["aria-expanded"] == "false"


def test_no_inline_script_no_handlers_no_style_attributes(make_site: Callable[..., Site]) -> None:
    markup = injected(make_site(consent_mode={"enabled": True, "analytics_storage": ["analytics"]}))
    tags = Tags(markup)
    assert tags.tags
    for tag, attrs in tags.tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert "style" not in attrs, tag
        for value in attrs.values():
            assert not (value or "").strip().lower().startswith("javascript:")
        if tag == "script":
            assert attrs.get("src", "").startswith("/_consent/assets/")
    assert all(not text.strip() for text in tags.script_text)
    assert "<style" not in markup


def test_nonce_is_applied_to_every_injected_script_and_link(
    make_site: Callable[..., Site],
) -> None:
    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        environ["my_nonce"] = 'n0nce"<'
        return html_app()(environ, start_response)

    site = make_site(
        app,
        ui={"csp_nonce_environ_key": "my_nonce"},
        consent_mode={"enabled": True, "analytics_storage": ["analytics"]},
    )
    data = site.get("/").get_data(as_text=True)
    tags = Tags(data)
    injected_tags = [a for t, a in tags.tags if t in ("script", "link")]
    assert len(injected_tags) == 3
    assert {a.get("nonce") for a in injected_tags} == {'n0nce"<'}
    assert 'nonce="n0nce&quot;&lt;"' in data


def test_no_nonce_attribute_without_a_nonce(make_site: Callable[..., Site]) -> None:
    assert "nonce=" not in injected(make_site())


def test_hostile_texts_are_escaped(make_site: Callable[..., Site]) -> None:
    hostile = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    site = make_site(
        purposes={"analytics": {"title": hostile, "description": hostile}},
        policy={"url": '/privacy?a=1&b="><script>'},
        ui={"texts": {"en": {"banner_title": hostile}}},
    )
    markup = injected(site)
    assert "<script>alert" not in markup
    assert "<img src=x" not in markup
    tags = Tags(markup)
    assert not [a for t, a in tags.tags if "onerror" in a]
    assert [t for t, _ in tags.tags].count("script") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert tags.find("a", href='/privacy?a=1&b="><script>')


def test_gpc_is_acknowledged(make_site: Callable[..., Site]) -> None:
    site = make_site()
    data = site.get("/", headers={"Sec-GPC": "1"}).get_data(as_text=True)
    assert "Global Privacy Control signal is honoured" in data
    tags = Tags(data)
    marketing = tags.find("input", value="marketing")[0]
    assert "disabled" in marketing
    assert "checked" not in marketing
    assert "Global Privacy Control signal is honoured" not in site.get("/").get_data(as_text=True)


def test_links_to_the_notice_and_the_policy(make_site: Callable[..., Site]) -> None:
    tags = page_tags(make_site())
    hrefs = {a["href"] for a in tags.find("a")}
    assert {"/_consent/policy", "/privacy", "/_consent/preferences"} <= hrefs


# ------------------------------------------------------------------ language


@pytest.mark.parametrize(
    ("accept", "lang", "title"),
    [
        pytest.param("de-DE,de;q=0.9,en;q=0.5", "de", "Werbung", id="de"),
        pytest.param("fr-CA", "fr", "Publicité", id="fr-by-purpose-translation"),
        pytest.param("ja,zh;q=0.5", "en", "Marketing contact", id="fallback"),
        pytest.param("en;q=0.1, de;q=0.9", "de", "Werbung", id="quality"),
        pytest.param("*;q=0.1;;,,\x00", "en", "Marketing contact", id="garbage"),
        pytest.param("x" * 5000, "en", "Marketing contact", id="huge"),
    ],
)
def test_language_from_accept_language(
    make_site: Callable[..., Site], accept: str, lang: str, title: str
) -> None:
    site = make_site()
    data = site.get("/", headers={"Accept-Language": accept}).get_data(as_text=True)
    tags = Tags(data)
    assert tags.find("div", id="cmw-banner")[0]["lang"] == lang
    assert title in html.unescape(data)
    assert site.mw.engine.ui.language({"HTTP_ACCEPT_LANGUAGE": accept}) == lang


def test_german_texts_ship_and_configured_texts_win(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"texts": {"de": {"accept_all": "Alles klar"}}})
    data = site.get("/", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert "Alles klar" in data
    assert "Alle ablehnen" in data


def test_default_language_is_configurable(make_site: Callable[..., Site]) -> None:
    site = make_site(ui={"default_language": "de"})
    assert "Alle akzeptieren" in site.get("/").get_data(as_text=True)


# ------------------------------------------------------------------ the script's contract


def test_script_tag_carries_the_mount_and_consent_mode(make_site: Callable[..., Site]) -> None:
    site = make_site(
        site={"mount": "/privacy-center"},
        consent_mode={
            "enabled": True,
            "analytics_storage": ["analytics"],
            "ad_storage": ["marketing"],
        },
    )
    tags = page_tags(site)
    script = next(a for a in tags.find("script") if "consent." in (a.get("src") or ""))
    assert script["data-mount"] == "/privacy-center"
    assert "defer" in script
    assert json.loads(script["data-consent-mode"] or "") == {
        "ad_storage": ["marketing"],
        "analytics_storage": ["analytics"],
    }
    forms = tags.find("form", id="cmw-choice")
    assert forms[0]["action"] == "/privacy-center"


def test_the_script_is_csp_clean() -> None:
    from importlib.resources import files

    for name in ("consent.js", "consent-mode.js"):
        source = (files("consentmw.ui") / "assets" / name).read_text()
        code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
        for forbidden in ("eval(", "new Function", "innerHTML", 'setTimeout("', "document.write"):
            assert forbidden not in code, (name, forbidden)


def test_banner_renders_every_purpose_in_order() -> None:
    from consentmw import Config

    cfg = Config.load(config())
    view = BannerView(
        mount="/_consent",
        csrf="t",
        next="/",
        purposes=tuple(cfg.purposes.values()),
        texts=texts_for(cfg, "en"),
        script_url="/s.js",
        nonce=None,
        gpc_purposes=frozenset(),
        gpc=False,
        notice=False,
        policy_changed=False,
        notice_url="/_consent/policy",
        policy_url=None,
        consent_mode=None,
    )
    tags = Tags(banner(view))
    assert [b["value"] for b in tags.find("input", type="checkbox")] == list(BASE["purposes"])
    assert not [a for a in tags.find("a") if a["href"] == "None"]
