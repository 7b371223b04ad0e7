"""Script gating and Consent Mode through the middleware, for every tag kind and state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import Site, Tags, html_app

PAGE = (
    b"<!doctype html><html><head><title>t</title>"
    b'<script src="/first.js"></script></head><body>'
    b'<script data-consent="analytics" src="/a.js" type="module"></script>'
    b'<script data-consent="analytics">window.inline = 1;</script>'
    b'<iframe data-consent="marketing" src="https://video.example/embed"></iframe>'
    b'<img data-consent="marketing" src="/pixel.gif" srcset="/pixel2.gif 2x" alt="">'
    b'<script data-consent="analytics marketing" src="/both.js"></script>'
    b'<script src="/plain.js"></script>'
    b"</body></html>"
)

STATES = {
    "undecided": (None, ()),
    "rejected": ("reject_all", ()),
    "analytics": ("custom", ("analytics",)),
    "marketing": ("custom", ("marketing",)),
    "accepted": ("accept_all", ()),
}


def tags_for(make_site: Callable[..., Site], state: str, **headers: str) -> Tags:
    site = make_site(html_app(PAGE))
    choice, purposes = STATES[state]
    if choice is not None:
        site.decide(choice, purposes)
    return Tags(site.get("/", headers=headers).get_data(as_text=True))


def gated(attrs: dict[str, str | None]) -> bool:
    if "data-src" in attrs or "data-srcdoc" in attrs:
        return True
    return attrs.get("type") == "text/plain"


@pytest.mark.parametrize("state", list(STATES))
def test_each_tag_kind_follows_the_state(make_site: Callable[..., Site], state: str) -> None:
    tags = tags_for(make_site, state)
    analytics = state in ("analytics", "accepted")
    marketing = state in ("marketing", "accepted")
    scripts = {a.get("src") or a.get("data-src") or "inline": a for a in tags.find("script")}
    assert gated(scripts["/a.js"]) is not analytics
    assert gated(scripts["inline"]) is not analytics
    assert gated(scripts["/both.js"]) is not (analytics and marketing)
    assert not gated(scripts["/plain.js"])
    assert not gated(scripts["/first.js"])
    iframe = tags.find("iframe")[0]
    img = tags.find("img")[0]
    assert gated(iframe) is not marketing
    assert gated(img) is not marketing
    if not analytics:
        assert scripts["/a.js"]["data-type"] == "module"
        assert scripts["/a.js"]["type"] == "text/plain"
        assert "src" not in scripts["/a.js"]
    else:
        assert scripts["/a.js"]["type"] == "module"
    if not marketing:
        assert img["data-srcset"] == "/pixel2.gif 2x"
        assert "srcset" not in img
        assert iframe["data-src"] == "https://video.example/embed"
        assert "src" not in iframe


@pytest.mark.parametrize("size", [4096, None], ids=["chunks-4096", "whole"])
def test_a_long_tag_does_not_turn_gating_off(
    make_site: Callable[..., Site], size: int | None
) -> None:
    # A data: URI image longer than the injector holds back, then a gated tracker.
    page = (
        b'<!doctype html><html><head></head><body><img alt="" src="data:image/png;base64,'
        + b"A" * 70_000
        + b'"><script data-consent="analytics" src="https://tracker.example/ga.js"></script>'
        b"</body></html>"
    )
    chunks = [page] if size is None else [page[i : i + size] for i in range(0, len(page), size)]
    tags = Tags(make_site(html_app(chunks)).get("/").get_data(as_text=True))
    tracker = [a for a in tags.find("script") if "tracker" in str(a.get("src", a.get("data-src")))]
    assert len(tracker) == 1
    assert gated(tracker[0])
    assert "src" not in tracker[0]
    assert str(tags.find("img")[0]["src"]).startswith("data:image/png;base64,AAAA")


def test_gpc_turns_marketing_tags_off_again(make_site: Callable[..., Site]) -> None:
    tags = tags_for(make_site, "accepted", **{"Sec-GPC": "1"})
    assert gated(tags.find("img")[0])
    scripts = {a.get("src") or a.get("data-src") or "inline": a for a in tags.find("script")}
    assert not gated(scripts["/a.js"])


def test_gating_can_be_turned_off(make_site: Callable[..., Site]) -> None:
    site = make_site(html_app(PAGE), ui={"script_gating": False})
    data = site.get("/").get_data()
    assert data.startswith(PAGE[: PAGE.index(b"</body>")])


# ------------------------------------------------------------------ Consent Mode

CONSENT_MODE = {
    "enabled": True,
    "analytics_storage": ["analytics"],
    "ad_storage": ["marketing"],
    "ad_user_data": ["marketing"],
    "ad_personalization": ["marketing", "analytics"],
    "security_storage": ["necessary"],
}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param(
            "undecided",
            {"analytics_storage": "denied", "ad_storage": "denied", "security_storage": "granted"},
            id="undecided",
        ),
        pytest.param(
            "analytics",
            {
                "analytics_storage": "granted",
                "ad_storage": "denied",
                "ad_personalization": "denied",
            },
            id="analytics",
        ),
        pytest.param(
            "accepted",
            {
                "analytics_storage": "granted",
                "ad_storage": "granted",
                "ad_personalization": "granted",
                "functionality_storage": "denied",
            },
            id="accepted-unmapped-stays-denied",
        ),
    ],
)
def test_consent_mode_default_reflects_the_state(
    make_site: Callable[..., Site], state: str, expected: dict[str, str]
) -> None:
    site = make_site(html_app(PAGE), consent_mode=CONSENT_MODE)
    choice, purposes = STATES[state]
    if choice is not None:
        site.decide(choice, purposes)
    data = site.get("/").get_data(as_text=True)
    tags = Tags(data)
    first_script = next(a for t, a in tags.tags if t == "script")
    assert (first_script["src"] or "").startswith("/_consent/assets/consent-mode.")
    # The first thing in <head>, before the page's own first script.
    assert data.index("consent-mode.") < data.index("/first.js")
    assert data.index("<head>") < data.index("consent-mode.") < data.index("<title>")
    for ctype, value in expected.items():
        assert first_script["data-" + ctype.replace("_", "-")] == value
    assert first_script["data-wait-for-update"] == "500"
    assert len([k for k in first_script if k.endswith("-storage") or "-ad-" in k]) >= 4


def test_consent_mode_makes_the_page_vary(make_site: Callable[..., Site]) -> None:
    site = make_site(
        html_app(PAGE),
        consent_mode=CONSENT_MODE,
        ui={"banner": False, "settings_link": False, "script_gating": False},
    )
    response = site.get("/")
    assert "consent-mode." in response.get_data(as_text=True)
    assert "Cookie" in response.headers["Vary"]
