"""The acceptance scenario, once, for a plain WSGI site, a Flask app and a Django project.

A visitor from an opt-in jurisdiction (``CF-IPCountry: DE`` with the MODX configuration's
notice model) sees the banner, rejects, accepts analytics, downloads a file, and withdraws.
Every site runs ``examples/consentmw.toml`` with SQLite sinks; the checks read the sink.
"""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.test import Client

from .conftest import Site

#: An opt-in country, and a same-origin browser request.
HEADERS = {"CF-IPCountry": "DE", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document"}
REQUIRED = ["necessary", "security"]


def choose(client: Client, choice: str, *purposes: str) -> Any:
    token = client.get("/_consent", headers=HEADERS).get_json()["csrf"]
    form = [("choice", choice), ("csrf", token), ("next", "/")]
    form += [("purpose", p) for p in purposes]
    return client.post("/_consent", data=MultiDict(form), headers=HEADERS)


def set_cookies(response: Any, name: str) -> list[str]:
    """The ``Set-Cookie`` values for ``name`` (Django writes them with a leading space)."""
    values = [v.strip() for v in response.headers.getlist("Set-Cookie")]
    return [v for v in values if v.startswith(name + "=")]


def test_banner_reject_accept_record_strip_withdraw(site: Site) -> None:
    client = site.client

    # The banner on the first visit; the analytics cookie the page sets does not go out.
    first = client.get("/", headers=HEADERS)
    assert first.status_code == 200
    assert first.text.count('id="cmw-banner"') == 1
    assert not set_cookies(first, "site_visits")
    assert client.get("/_consent", headers=HEADERS).get_json()["granted"] == REQUIRED

    # Reject: no banner any more, and the declined cookie is still stripped.
    rejected = choose(client, "reject_all")
    assert rejected.status_code == 303
    assert rejected.headers["Location"] == "/"
    after = client.get("/", headers=HEADERS)
    assert 'id="cmw-banner"' not in after.text
    assert not set_cookies(after, "site_visits")
    assert client.get_cookie("site_visits") is None

    # Accept analytics: the cookie goes out, and the download is recorded.
    assert choose(client, "custom", "analytics").status_code == 303
    state = client.get("/_consent", headers=HEADERS).get_json()
    assert state["granted"] == ["analytics", *REQUIRED]
    assert state["decided"] is True
    granted = client.get("/", headers=HEADERS)
    assert set_cookies(granted, "site_visits")
    assert client.get_cookie("site_visits") is not None
    download = client.get("/downloads/modx-2.3.2.zip", headers=HEADERS)
    assert download.status_code == 200

    # Withdraw: the analytics cookie the browser holds is expired in the same response.
    withdrawn = choose(client, "reject_all")
    expiries = set_cookies(withdrawn, "site_visits")
    assert expiries
    assert all("Max-Age=0" in value for value in expiries)
    assert client.get_cookie("site_visits") is None
    assert client.get("/downloads/modx-2.3.2.zip", headers=HEADERS).status_code == 200

    events = site.events()
    downloads = [e for e in events if e.type == "action" and e.name == "download"]
    assert len(downloads) == 1, downloads
    [recorded] = downloads
    assert recorded.visitor_id
    assert "analytics" in recorded.purposes
    assert recorded.props["filename"] == "modx-2.3.2.zip"
    identified = [e for e in events if e.visitor_id or e.session_id]
    assert identified
    assert all("analytics" in e.purposes for e in identified)
    assert {e.visitor_id for e in identified} == {recorded.visitor_id}
    anonymous = [e for e in events if e.type == "page_visit" and e.aggregate]
    assert anonymous  # counted without identifiers before the visitor agreed
    mechanisms = [r.mechanism for r in site.consent_records()]
    assert mechanisms == ["reject_all", "custom", "withdraw"]


def test_notice_model_continued_use_is_acceptance(site: Site) -> None:
    client = site.client
    headers = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document"}
    first = client.get("/", headers=headers)
    assert 'id="cmw-banner"' in first.text  # the notice
    assert not set_cookies(first, "site_visits")
    second = client.get("/", headers=headers)  # carrying on
    assert 'id="cmw-banner"' not in second.text
    assert set_cookies(second, "site_visits")
    state = client.get("/_consent", headers=headers).get_json()
    assert state["source"] == "notice"
    assert "analytics" in state["granted"]
    assert [r.mechanism for r in site.consent_records()] == ["notice"]
