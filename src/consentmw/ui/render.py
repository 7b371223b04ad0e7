"""HTML for the banner, the settings link, the Consent Mode tag and consentmw's own pages.

Plain functions from values to text: no environ, no request. Every value that comes from
the configuration or the request is escaped with :func:`html.escape` here, at the point
where it enters markup (``markupsafe`` is not a dependency). The markup has no inline
script, no inline event handler and no ``style`` attribute, so it runs under a strict
Content Security Policy; the CSP nonce, when there is one, goes on every ``<script>`` and
``<link>``.

The banner is a ``<form>`` that works without JavaScript; ``consent.js`` enhances it.

Not an extension point: the markup, ids and classes are the contract between these
functions, ``consent.js`` and ``consent.css``; change the words through ``[ui.texts]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..config import Config, Purpose
from .texts import Texts

__all__ = [
    "BannerView",
    "PageView",
    "banner",
    "consent_mode_tag",
    "policy_page",
    "preferences_page",
    "problem_page",
    "settings_link",
    "stylesheet",
]


def _attr(value: str) -> str:
    return escape(value, quote=True)


def _nonce(nonce: str | None) -> str:
    return f' nonce="{_attr(nonce)}"' if nonce else ""


def stylesheet(url: str, nonce: str | None) -> str:
    """The ``<link>`` to consentmw's stylesheet."""
    return f'<link rel="stylesheet" href="{_attr(url)}"{_nonce(nonce)}>'


def settings_link(url: str, texts: Texts) -> str:
    """The "Cookie settings" link put at the end of every page."""
    return (
        f'<p class="cmw-settings" lang="{_attr(texts.lang)}">'
        f'<a href="{_attr(url)}">{escape(texts["settings_link"])}</a></p>'
    )


def consent_mode_tag(url: str, types: Mapping[str, str], wait_ms: int, nonce: str | None) -> str:
    """The Consent Mode default: a blocking script reading the state from its attributes."""
    attrs = "".join(
        f' data-{name.replace("_", "-")}="{_attr(value)}"' for name, value in types.items()
    )
    return (
        f'<script src="{_attr(url)}"{attrs} data-wait-for-update="{wait_ms:d}"'
        f"{_nonce(nonce)}></script>"
    )


@dataclass(frozen=True, slots=True)
class BannerView:
    """What the banner shows for one request."""

    mount: str
    csrf: str
    next: str
    purposes: Sequence[Purpose]
    texts: Texts
    script_url: str
    nonce: str | None
    gpc_purposes: frozenset[str]
    gpc: bool
    notice: bool
    policy_changed: bool
    notice_url: str
    policy_url: str | None
    consent_mode: Mapping[str, Sequence[str]] | None


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{name}" value="{_attr(value)}">'


def _links(texts: Texts, notice_url: str, policy_url: str | None) -> str:
    links = [f'<a href="{_attr(notice_url)}">{escape(texts["notice_link"])}</a>']
    if policy_url:
        links.append(f'<a href="{_attr(policy_url)}">{escape(texts["policy_link"])}</a>')
    return " · ".join(links)


def _purpose_box(
    purpose: Purpose,
    texts: Texts,
    *,
    id_prefix: str,
    checked: bool,
    gpc_blocked: bool,
    extra: str = "",
) -> str:
    title, description = purpose.text(texts.lang)
    pid = _attr(purpose.id)
    box_id = f"{id_prefix}-{pid}"
    desc_id = f"{box_id}-desc"
    flags = ""
    if purpose.required:
        flags = " checked disabled"
    elif gpc_blocked:
        flags = " disabled"
    elif checked:
        flags = " checked"
    described = f' aria-describedby="{desc_id}"' if description or gpc_blocked else ""
    badge = (
        f'<span class="cmw-badge">{escape(texts["always_on"])}</span>' if purpose.required else ""
    )
    parts = [
        '<div class="cmw-purpose">',
        '<div class="cmw-purpose-head">',
        f'<input type="checkbox" id="{box_id}" name="purpose" value="{pid}"{flags}{described}>',
        f'<label for="{box_id}">{escape(title)}</label>{badge}',
        "</div>",
    ]
    if description or gpc_blocked:
        parts.append(f'<div id="{desc_id}">')
        if description:
            parts.append(f'<p class="cmw-pdesc">{escape(description)}</p>')
        if gpc_blocked:
            parts.append(f'<p class="cmw-note">{escape(texts["gpc_blocked"])}</p>')
        parts.append("</div>")
    parts.append(extra)
    parts.append("</div>")
    return "".join(parts)


def banner(view: BannerView) -> str:
    """The consent banner: a non-modal dialog with two layers.

    The first layer has Reject all, Customise and Accept all — one style, one size, one row.
    Without JavaScript, Customise opens the preferences page; with it, the second layer
    (the purposes, none ticked but the required ones) opens in place.
    """
    t = view.texts
    mount = _attr(view.mount)
    hidden = _hidden("csrf", view.csrf) + _hidden("next", view.next)
    # Under the "notice" model, carrying on is the acceptance: the banner must say so.
    text = "notice_text" if view.notice else "banner_text"
    tags = "".join(f"<li>{escape(p.text(t.lang)[0])}</li>" for p in view.purposes)
    gpc = f'<p class="cmw-gpc">{escape(t["gpc_honoured"])}</p>' if view.gpc else ""
    changed = (
        f'<p class="cmw-changed">{escape(t["policy_changed"])}</p>' if view.policy_changed else ""
    )
    boxes = "".join(
        _purpose_box(
            p,
            t,
            id_prefix="cmw-b",
            checked=False,
            gpc_blocked=view.gpc and p.id in view.gpc_purposes,
        )
        for p in view.purposes
    )
    script_attrs = f' data-mount="{mount}"'
    if view.consent_mode is not None:
        mapping = json.dumps(dict(view.consent_mode), separators=(",", ":"), sort_keys=True)
        script_attrs += f' data-consent-mode="{_attr(mapping)}"'
    return (
        f'<div id="cmw-banner" class="cmw-banner" lang="{_attr(t.lang)}">'
        '<div id="cmw-dialog" class="cmw-card" role="dialog" aria-modal="false" '
        'aria-labelledby="cmw-title" aria-describedby="cmw-desc" tabindex="-1">'
        f'<h2 id="cmw-title" class="cmw-title">{escape(t["banner_title"])}</h2>'
        '<div id="cmw-first">'
        f'<div id="cmw-desc"><p class="cmw-text">{escape(t[text])}</p>{changed}{gpc}'
        f'<ul class="cmw-tags">{tags}</ul></div>'
        f'<p class="cmw-links">{_links(t, view.notice_url, view.policy_url)}</p>'
        f'<form id="cmw-choice" class="cmw-form" method="post" action="{mount}">{hidden}'
        '<div class="cmw-actions">'
        '<button type="submit" class="cmw-btn" name="choice" value="reject_all">'
        f"{escape(t['reject_all'])}</button>"
        '<button type="submit" class="cmw-btn" id="cmw-customise" form="cmw-customise-form" '
        f'aria-controls="cmw-panel" aria-expanded="false">{escape(t["customise"])}</button>'
        '<button type="submit" class="cmw-btn" name="choice" value="accept_all">'
        f"{escape(t['accept_all'])}</button>"
        "</div></form>"
        f'<form id="cmw-customise-form" method="get" action="{mount}/preferences">'
        f"{_hidden('next', view.next)}</form>"
        "</div>"
        f'<form id="cmw-panel" class="cmw-form" method="post" action="{mount}" hidden>{hidden}'
        f'<fieldset class="cmw-fieldset"><legend class="cmw-legend">{escape(t["purposes"])}'
        f"</legend>{boxes}</fieldset>"
        '<div class="cmw-actions">'
        '<button type="button" class="cmw-btn cmw-btn-quiet" id="cmw-back">'
        f"{escape(t['back'])}</button>"
        '<button type="submit" class="cmw-btn" name="choice" value="custom">'
        f"{escape(t['save'])}</button>"
        "</div></form>"
        "</div></div>"
        f'<script src="{_attr(view.script_url)}"{script_attrs} defer{_nonce(view.nonce)}></script>'
    )


# ----------------------------------------------------------------------------- pages


@dataclass(frozen=True, slots=True)
class PageView:
    """What every consentmw page needs: texts, the stylesheet, the nonce, the links."""

    texts: Texts
    css_url: str
    nonce: str | None
    mount: str
    site_name: str
    policy_url: str | None


def _document(view: PageView, title: str, main: str) -> str:
    t = view.texts
    return (
        f'<!doctype html><html lang="{_attr(t.lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} · {escape(view.site_name)}</title>"
        f"{stylesheet(view.css_url, view.nonce)}</head>"
        f'<body class="cmw-page-body"><main class="cmw-page">{main}</main></body></html>'
    )


def _date(ts: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _lifetime(row: Mapping[str, Any], t: Texts) -> str:
    days = row.get("max_age_days")
    if isinstance(days, (int, float)):
        return t["lifetime_day"] if days == 1 else t.get("lifetime_days", n=f"{days:g}")
    if row.get("name") and row.get("lifetime") == "until the browser closes":
        return t["lifetime_session"]
    return t["lifetime_unknown"]


def _cookie_table(
    rows: Iterable[Mapping[str, Any]], t: Texts, titles: Mapping[str, str], *, purpose_column: bool
) -> str:
    body = []
    for row in rows:
        name = escape(str(row["name"]))
        if row.get("match") == "prefix":
            name += "*"
        cells = [f"<td><code>{name}</code></td>"]
        if purpose_column:
            purpose = row.get("purpose") or ""
            cells.append(f"<td>{escape(titles.get(purpose, purpose))}</td>")
        cells.append(f"<td>{escape(_lifetime(row, t))}</td>")
        cells.append(f"<td>{escape(str(row.get('description') or ''))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    head = [f'<th scope="col">{escape(t["cookie_name"])}</th>']
    if purpose_column:
        head.append(f'<th scope="col">{escape(t["cookie_purpose"])}</th>')
    head.append(f'<th scope="col">{escape(t["cookie_lifetime"])}</th>')
    head.append(f'<th scope="col">{escape(t["cookie_description"])}</th>')
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def preferences_page(
    view: PageView,
    *,
    config: Config,
    granted: frozenset[str],
    decided_at: int | None,
    decided_version: str | None,
    receipt: str | None,
    gpc_sent: bool,
    gpc_honoured: frozenset[str],
    csrf: str,
    next_url: str,
    back_url: str,
    saved: bool,
) -> str:
    """The preferences page: every purpose with its cookies, the current state ticked, a
    form that saves a custom choice and buttons to reject or accept all (withdrawal in one
    step), the consent receipt and the GPC status."""
    t = view.texts
    mount = _attr(view.mount)
    hidden = _hidden("csrf", csrf) + _hidden("next", next_url)
    declaration = config.declaration()
    parts = [
        f'<p><a href="{_attr(back_url)}">← {escape(t["back_to_site"])}</a></p>',
        f"<h1>{escape(t['preferences_title'])}</h1>",
        f'<p class="cmw-lead">{escape(t["preferences_intro"])}</p>',
    ]
    if saved and decided_at:
        parts.append(f'<p class="cmw-status-ok" role="status">{escape(t["saved"])}</p>')
    status = []
    if decided_at:
        status.append(
            "<p>"
            + escape(t.get("status_decided", date=_date(decided_at), version=decided_version or ""))
            + "</p>"
        )
    else:
        status.append(f"<p>{escape(t['status_undecided'])}</p>")
    if receipt:
        status.append(f"<p>{escape(t['receipt'])}: <code>{escape(receipt)}</code></p>")
    gpc_text = t["gpc_on"] if gpc_sent and gpc_honoured else t["gpc_off"]
    if gpc_sent and not gpc_honoured:
        gpc_text = t["gpc_honoured"]
    status.append(f'<p class="cmw-muted">{escape(gpc_text)}</p>')
    parts.append(f'<section class="cmw-panel-box" aria-label="Status">{"".join(status)}</section>')
    boxes = []
    for purpose in config.purposes.values():
        rows = [r for r in declaration if r["purpose"] == purpose.id]
        if rows:
            table = _cookie_table(rows, t, {}, purpose_column=False)
            extra = f'<div class="cmw-table-wrap" aria-label="{_attr(t["cookies"])}">{table}</div>'
        else:
            extra = f'<p class="cmw-pdesc">{escape(t["no_cookies"])}</p>'
        boxes.append(
            _purpose_box(
                purpose,
                t,
                id_prefix="cmw-p",
                checked=purpose.id in granted,
                gpc_blocked=purpose.id in gpc_honoured,
                extra=extra,
            )
        )
    parts.append(
        f'<form id="cmw-prefs" method="post" action="{mount}">{hidden}'
        f'<fieldset class="cmw-fieldset"><legend class="cmw-legend">{escape(t["purposes"])}'
        f"</legend>{''.join(boxes)}</fieldset>"
        '<div class="cmw-actions">'
        '<button type="submit" class="cmw-btn" name="choice" value="reject_all" form="cmw-all">'
        f"{escape(t['reject_all'])}</button>"
        '<button type="submit" class="cmw-btn" name="choice" value="custom">'
        f"{escape(t['save'])}</button>"
        '<button type="submit" class="cmw-btn" name="choice" value="accept_all" form="cmw-all">'
        f"{escape(t['accept_all'])}</button>"
        "</div></form>"
        f'<form id="cmw-all" method="post" action="{mount}">{hidden}</form>'
    )
    parts.append(f'<p class="cmw-links">{_links(t, view.mount + "/policy", view.policy_url)}</p>')
    return _document(view, t["preferences_title"], "".join(parts))


def policy_page(view: PageView, *, config: Config) -> str:
    """The cookie notice: purposes, every declared cookie, the policy version and history."""
    t = view.texts
    lang = t.lang
    titles = {p.id: p.text(lang)[0] for p in config.purposes.values()}
    parts = [
        f"<h1>{escape(t['policy_title'])}</h1>",
        f'<p class="cmw-lead">{escape(t["policy_intro"])}</p>',
        f'<p class="cmw-muted">{escape(t.get("policy_version", version=config.policy.version))}'
        f" · {escape(config.policy.model)}</p>",
        f"<h2>{escape(t['purposes'])}</h2>",
    ]
    for purpose in config.purposes.values():
        title, description = purpose.text(lang)
        badge = (
            f' <span class="cmw-badge">{escape(t["always_on"])}</span>' if purpose.required else ""
        )
        desc = f'<p class="cmw-pdesc">{escape(description)}</p>' if description else ""
        parts.append(
            f'<div class="cmw-purpose" id="purpose-{_attr(purpose.id)}">'
            f'<div class="cmw-purpose-head"><strong>{escape(title)}</strong>{badge}</div>'
            f"{desc}</div>"
        )
    parts.append(f"<h2>{escape(t['cookies'])}</h2>")
    table = _cookie_table(config.declaration(), t, titles, purpose_column=True)
    parts.append(f'<div class="cmw-table-wrap cmw-table-wide">{table}</div>')
    if config.policy.history:
        items = "".join(
            f"<li><strong>{escape(h.version)}</strong>: "
            f"{escape(', '.join(titles.get(p, p) for p in sorted(h.purposes)))}</li>"
            for h in config.policy.history
        )
        parts.append(f"<h2>{escape(t['history'])}</h2><ul>{items}</ul>")
    links = [f'<a href="{_attr(view.mount)}/preferences">{escape(t["settings_link"])}</a>']
    if view.policy_url:
        links.append(f'<a href="{_attr(view.policy_url)}">{escape(t["policy_link"])}</a>')
    parts.append(f'<p class="cmw-links">{" · ".join(links)}</p>')
    return _document(view, t["policy_title"], "".join(parts))


def problem_page(view: PageView, status: int, reason: str) -> str:
    """A friendly page for a refused or failed consent request."""
    t = view.texts
    title = t["not_found"] if status in (404, 405) else t["problem_title"]
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="cmw-lead">{escape(reason)}</p>' if reason else "",
        '<p class="cmw-links">'
        f'<a href="{_attr(view.mount)}/preferences">{escape(t["settings_link"])}</a> · '
        f'<a href="/">{escape(t["back_to_site"])}</a></p>',
    ]
    return _document(view, title, "".join(parts))
