"""``consentmw demo``: a small example site wrapped in :class:`~consentmw.ConsentMiddleware`.

It shows everything the middleware does on one screen's worth of pages: the banner and the
settings link, a third-party-style analytics script and a marketing pixel marked
``data-consent`` (neutralised until granted, activated without a reload), one cookie set by
the application for each purpose (removed by the middleware while not granted), a download
and a contact form recorded by tracking rules, a cart kept in ``ctx.cart``, a strict
Content Security Policy with a nonce, and the events recorded in an embedded SQLite file.

Run it with ``consentmw demo [--port 8000] [--data ./consentmw-demo]``; it serves on
127.0.0.1 only. :func:`make_app` builds the same site as a WSGI application (tests drive it
in-process or on a loopback port).

Not a template for a production site: the configuration is built in code with
``secure = false`` for plain HTTP on localhost, and the pages are deliberately minimal.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .context import get_context
from .errors import SinkError
from .wsgi import ConsentMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["COMMANDS", "demo_config", "demo_site", "make_app", "run"]

#: The environ key the demo puts its CSP nonce under (consentmw's default).
NONCE_KEY = "csp_nonce"

_KEY_FILE = "secret.key"

_STYLE = """
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d8dee4; --bg: #ffffff;
  --soft: #f6f8fa; --accent: #0b57d0; }
html[data-theme="dark"] { color-scheme: dark; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d;
  --bg: #0d1117; --soft: #161b22; --accent: #58a6ff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
header { border-bottom: 1px solid var(--line); background: var(--soft); }
.wrap { max-width: 60rem; margin: 0 auto; padding: 0 20px; }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 22px; padding: 14px 0; }
.brand { font-weight: 700; font-size: 1.1rem; color: var(--fg); text-decoration: none; }
nav a { color: var(--fg); text-decoration: none; margin-right: 16px; }
nav a:hover, nav a:focus-visible { text-decoration: underline; }
main { padding: 28px 0 40px; }
h1 { font-size: 1.9rem; line-height: 1.2; margin: 0 0 12px; }
.lead { color: var(--muted); font-size: 1.1rem; margin: 0 0 24px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 16px; }
.card { border: 1px solid var(--line); border-radius: 12px; padding: 16px 18px;
  background: var(--bg); }
.card h2 { font-size: 1.05rem; margin: 0 0 6px; }
.card p { margin: 0 0 8px; color: var(--muted); }
.status { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9rem; }
a { color: var(--accent); }
label { display: block; font-weight: 600; margin: 12px 0 4px; }
input[type=text], input[type=email], textarea, select { width: 100%; max-width: 28rem;
  padding: 8px 10px; border: 1px solid var(--line); border-radius: 8px; font: inherit;
  background: var(--bg); color: var(--fg); }
button { margin-top: 12px; padding: 8px 16px; border-radius: 8px; border: 1px solid var(--fg);
  background: var(--fg); color: var(--bg); font: inherit; font-weight: 600; cursor: pointer; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { text-align: left; border-bottom: 1px solid var(--line); padding: 6px 8px; }
footer { border-top: 1px solid var(--line); color: var(--muted); font-size: 0.9rem; }
footer .wrap { padding: 16px 20px; }
"""

_ANALYTICS_JS = """/* A stand-in for a third-party analytics snippet. It runs only once the visitor
   has granted "analytics": the middleware serves it as type="text/plain" until then. */
(function () {
  if (document.cookie.indexOf("_ga_demo=") === -1) {
    var id = "GA1.2." + Math.floor(Math.random() * 1e9) + "." + Math.floor(Date.now() / 1000);
    document.cookie = "_ga_demo=" + id + "; path=/; max-age=" + 390 * 86400 + "; SameSite=Lax";
  }
  window.demoAnalytics = (window.demoAnalytics || 0) + 1;
  document.documentElement.setAttribute("data-analytics", "ran");
  var el = document.getElementById("analytics-status");
  if (el) {
    el.textContent = "running: it set the _ga_demo cookie";
  }
})();
"""

_MARKETING_JS = """/* A stand-in for a marketing tag, gated on "marketing". */
(function () {
  document.cookie = "_mkt_demo=1; path=/; max-age=" + 30 * 86400 + "; SameSite=Lax";
  window.demoMarketing = true;
  document.documentElement.setAttribute("data-marketing", "ran");
  var el = document.getElementById("marketing-status");
  if (el) {
    el.textContent = "running: it set the _mkt_demo cookie";
  }
})();
"""

_DEMO_JS = """/* The demo's own script: shows a choice made in the banner without a reload, through
   the "consentmw:change" event the banner script dispatches with the new state. */
document.addEventListener("consentmw:change", function (event) {
  var el = document.getElementById("consent-status");
  if (el && event.detail && event.detail.granted) {
    el.textContent = "granted: " + event.detail.granted.join(", ") + "; decided: yes";
  }
});
"""

# A 1x1 transparent GIF (the "tracking pixel", gated on marketing).
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)

_WHITEPAPER = b"""Example Shop white paper
========================

This file is served with Content-Disposition: attachment. The middleware recorded the
download as an action event, if you allowed "Improve our content".
"""

_PRODUCTS = {"mug": "Coffee mug", "shirt": "T-shirt", "sticker": "Sticker pack"}


# ----------------------------------------------------------------------------- config


def _secret_key(data_dir: Path) -> str:
    """The demo's secret key, generated once and kept in the data directory so that a
    restart keeps the visitors' cookies valid."""
    path = data_dir / _KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= 32:
        return key
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    return key


def demo_config(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The demo's configuration (the TOML structure as a mapping), creating ``data_dir``."""
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    events = "sqlite:///" + str(root / "events.db")  # an absolute path: four slashes
    return {
        "site": {"name": "demo.localhost", "secret_keys": [_secret_key(root)]},
        "policy": {
            "version": "2014-12-12",
            "model": "opt-in",
            "url": "/privacy",
            "history": [{"version": "2013-06-01", "purposes": ["necessary", "analytics"]}],
        },
        "purposes": {
            "necessary": {
                "title": "Strictly necessary",
                "description": "Your session, your cart and the record of your choices.",
                "required": True,
                "translations": {
                    "de": {
                        "title": "Unbedingt erforderlich",
                        "description": "Ihre Sitzung, Ihr Warenkorb und Ihre Auswahl.",
                    }
                },
            },
            "preferences": {
                "title": "Remember your settings",
                "description": "Keeps the colour theme you pick.",
                "translations": {
                    "de": {
                        "title": "Einstellungen merken",
                        "description": "Merkt sich das gewählte Farbschema.",
                    }
                },
            },
            "analytics": {
                "title": "Improve our content",
                "description": "Counts visits and downloads so we know which pages help.",
                "translations": {
                    "de": {
                        "title": "Inhalte verbessern",
                        "description": "Zählt Besuche und Downloads.",
                    }
                },
            },
            "marketing": {
                "title": "Marketing contact",
                "description": "Remembers the campaign that brought you here.",
                "gpc_opt_out": True,
                "translations": {
                    "de": {
                        "title": "Werbung",
                        "description": "Merkt sich, welche Kampagne Sie hergeführt hat.",
                    }
                },
            },
        },
        "cookies": [
            {
                "name": "demo_cookie_check",
                "purpose": "necessary",
                "description": "Checks that your browser keeps cookies.",
                "max_age_days": 1,
            },
            {
                "name": "demo_theme",
                "purpose": "preferences",
                "description": "The colour theme you picked.",
                "max_age_days": 365,
            },
            {
                "name": "demo_visits",
                "purpose": "analytics",
                "description": "How many pages you have seen.",
                "max_age_days": 30,
            },
            {
                "name": "_ga_demo",
                "purpose": "analytics",
                "description": "Visitor id set by the analytics script.",
                "max_age_days": 390,
            },
            {
                "name": "demo_campaign",
                "purpose": "marketing",
                "description": "The campaign that brought you here.",
                "max_age_days": 30,
            },
            {
                "name": "_mkt_demo",
                "purpose": "marketing",
                "description": "Set by the marketing tag.",
                "max_age_days": 30,
            },
        ],
        # Plain HTTP on localhost: no Secure attribute, no __Host- prefix.
        "cookie_settings": {"secure": False, "samesite": "Lax", "undeclared": "block"},
        "tracking": {
            "page_visits": True,
            "tracking_purpose": "analytics",
            "aggregate_without_consent": True,
            "ignore_paths": ["/static/*", "/favicon.ico"],
            "actions": [
                {"name": "download", "on_response": "attachment"},
                {
                    "name": "contact_form",
                    "method": "POST",
                    "path": "/contact",
                    "capture": ["email"],
                },
                {"name": "cart_add", "method": "POST", "path": "/cart/add"},
            ],
        },
        "sinks": {"events": [events]},
        "dispatch": {"flush_interval_ms": 250},
        "consent_mode": {
            "enabled": True,
            "analytics_storage": ["analytics"],
            "ad_storage": ["marketing"],
            "ad_user_data": ["marketing"],
            "ad_personalization": ["marketing"],
            "functionality_storage": ["preferences"],
            "personalization_storage": ["preferences"],
            "security_storage": ["necessary"],
        },
        "ui": {"csp_nonce_environ_key": NONCE_KEY},
    }


# ----------------------------------------------------------------------------- the site


def _layout(request: Request, title: str, body: str, *, scripts: str = "") -> str:
    nonce = request.environ[NONCE_KEY]
    theme = request.cookies.get("demo_theme", "light")
    theme = theme if theme in ("light", "dark") else "light"
    nav = "".join(
        f'<a href="{href}">{label}</a>'
        for href, label in (
            ("/", "Home"),
            ("/docs", "Docs"),
            ("/downloads", "Downloads"),
            ("/contact", "Contact"),
            ("/cart", "Cart"),
            ("/recorded", "What we recorded"),
            ("/privacy", "Privacy"),
        )
    )
    return (
        f'<!doctype html><html lang="en" data-theme="{theme}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · Example Shop</title>"
        f'<link rel="stylesheet" href="/static/demo.css" nonce="{nonce}">'
        f'<script src="/static/demo.js" defer nonce="{nonce}"></script></head><body>'
        '<header><div class="wrap bar"><a class="brand" href="/">Example Shop</a>'
        f'<nav aria-label="Main">{nav}</nav></div></header>'
        f'<main class="wrap">{body}</main>'
        '<footer><div class="wrap">A consentmw demo. Nothing here leaves this computer.'
        f"</div></footer>{scripts}</body></html>"
    )


def _gated_scripts(nonce: str) -> str:
    return (
        '<script data-consent="analytics" src="/static/analytics.js"></script>'
        f'<script data-consent="analytics" nonce="{nonce}">'
        "window.demoInlineAnalytics = true;</script>"
        '<script data-consent="marketing" src="/static/marketing.js"></script>'
        '<img data-consent="marketing" src="/static/pixel.gif" alt="" width="1" height="1">'
    )


def _home(request: Request) -> Response:
    ctx = get_context(request.environ)
    state = ctx.consent
    granted = ", ".join(sorted(state.granted)) or "nothing"
    body = (
        "<h1>Welcome to the Example Shop</h1>"
        '<p class="lead">A tiny site wrapped in consentmw. Make a choice in the banner and watch '
        "what changes on this page, in your cookies and in what gets recorded.</p>"
        '<div class="grid">'
        '<section class="card"><h2>Your consent</h2>'
        f'<p class="status" id="consent-status">granted: {escape(granted)}; '
        f"decided: {'yes' if state.decided else 'no'}</p>"
        '<p>Change it any time under <a href="/_consent/preferences">Cookie settings</a>.</p>'
        "</section>"
        '<section class="card"><h2>Analytics script</h2>'
        '<p class="status" id="analytics-status">not running (needs "Improve our content")</p>'
        "</section>"
        '<section class="card"><h2>Marketing tag</h2>'
        '<p class="status" id="marketing-status">not running (needs "Marketing contact")</p>'
        "</section>"
        '<section class="card"><h2>Try it</h2>'
        '<p><a href="/downloads">Download</a> a file, <a href="/contact">send</a> a message or '
        '<a href="/cart">fill a cart</a>, then see <a href="/recorded">what was recorded</a>.</p>'
        "</section></div>"
    )
    response = _html(request, "Home", body, scripts=_gated_scripts(request.environ[NONCE_KEY]))
    # One cookie per purpose, set by the application; the middleware drops the ones whose
    # purpose is not granted.
    response.set_cookie("demo_cookie_check", "1", max_age=86400, httponly=True, samesite="Lax")
    visits = request.cookies.get("demo_visits", "0")
    count = int(visits) + 1 if visits.isdigit() and len(visits) < 6 else 1
    response.set_cookie("demo_visits", str(count), max_age=30 * 86400, samesite="Lax")
    response.set_cookie("demo_campaign", "spring-sale", max_age=30 * 86400, samesite="Lax")
    return response


def _docs(request: Request) -> Response:
    body = (
        "<h1>Docs</h1>"
        '<p class="lead">How the demo works.</p>'
        "<p>The banner is part of the HTML the server sends: it works without JavaScript. "
        "Scripts marked <code>data-consent</code> are sent as inert text until you grant "
        "their purpose, then the banner script starts them without a reload.</p>"
        "<p>Cookies the site sets for a purpose you have not granted never reach your browser: "
        "the middleware removes them from the response.</p>"
        '<form method="post" action="/theme"><label for="theme">Colour theme (kept only if '
        'you allow "Remember your settings")</label><select id="theme" name="theme">'
        '<option value="light">Light</option><option value="dark">Dark</option></select> '
        "<button>Save theme</button></form>"
    )
    return _html(request, "Docs", body, scripts=_gated_scripts(request.environ[NONCE_KEY]))


def _theme(request: Request) -> Response:
    theme = request.form.get("theme", "light")
    response = _redirect("/docs")
    if theme in ("light", "dark"):
        response.set_cookie("demo_theme", theme, max_age=365 * 86400, samesite="Lax")
    return response


def _downloads(request: Request) -> Response:
    body = (
        "<h1>Downloads</h1>"
        '<p><a id="download" href="/files/whitepaper.txt">Example Shop white paper</a> '
        "(text, 1 KB). The download is recorded as an action if you allowed "
        "&ldquo;Improve our content&rdquo;.</p>"
    )
    return _html(request, "Downloads", body)


def _whitepaper(request: Request) -> Response:
    return Response(
        _WHITEPAPER,
        mimetype="text/plain",
        headers={"Content-Disposition": 'attachment; filename="example-whitepaper.txt"'},
    )


def _contact(request: Request) -> Response:
    if request.method == "POST":
        name = request.form.get("name", "")[:100]
        body = (
            "<h1>Thank you</h1>"
            f"<p>Thanks, {escape(name) or 'friend'}. Your message was received (and recorded "
            "with your e-mail address only if you allowed &ldquo;Improve our content&rdquo;).</p>"
        )
        return _html(request, "Thank you", body)
    body = (
        "<h1>Contact</h1>"
        '<form method="post" action="/contact">'
        '<label for="name">Name</label><input type="text" id="name" name="name">'
        '<label for="email">E-mail</label><input type="email" id="email" name="email">'
        '<label for="message">Message</label><textarea id="message" name="message" rows="4">'
        "</textarea><br><button>Send</button></form>"
    )
    return _html(request, "Contact", body)


def _cart(request: Request) -> Response:
    ctx = get_context(request.environ)
    items = ctx.cart.get("items", {})
    if request.method == "POST":
        if request.path == "/cart/add":
            item = request.form.get("item", "")
            if item in _PRODUCTS:
                items = dict(items)
                items[item] = int(items.get(item, 0)) + 1
                ctx.cart["items"] = items
        else:
            ctx.cart.clear()
        return _redirect("/cart")
    rows = "".join(
        f"<tr><td>{escape(_PRODUCTS.get(k, k))}</td><td>{int(v)}</td></tr>"
        for k, v in items.items()
    )
    table = (
        f"<table><thead><tr><th>Item</th><th>Quantity</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p>Your cart is empty.</p>"
    )
    options = "".join(f'<option value="{k}">{escape(v)}</option>' for k, v in _PRODUCTS.items())
    body = (
        '<h1>Cart</h1><p class="lead">Kept in a signed, strictly necessary cookie.</p>'
        f"{table}"
        f'<form method="post" action="/cart/add"><label for="item">Add an item</label>'
        f'<select id="item" name="item">{options}</select> <button>Add to cart</button></form>'
        '<form method="post" action="/cart/clear"><button>Empty the cart</button></form>'
    )
    return _html(request, "Cart", body)


def _recorded(request: Request, sinks: Callable[[], Iterable[Any]]) -> Response:
    ctx = get_context(request.environ)
    visitor = ctx.visitor.visitor_id
    if visitor is None:
        body = (
            "<h1>What we recorded</h1>"
            "<p>Nothing about you: you have not allowed &ldquo;Improve our content&rdquo;. "
            "Only anonymous page counts (no identifiers) are kept.</p>"
        )
        return _html(request, "What we recorded", body)
    rows = []
    try:
        for sink in sinks():
            query = getattr(sink, "query", None)
            if query is None:
                continue
            for event in query(subject=visitor):
                data = event.to_dict()
                rows.append(
                    f"<tr><td>{escape(str(data.get('ts', '')))}</td>"
                    f"<td>{escape(str(data.get('type', '')))}</td>"
                    f"<td>{escape(str(data.get('name') or ''))}</td>"
                    f"<td>{escape(str(data.get('path') or ''))}</td></tr>"
                )
    except SinkError as exc:
        rows = [
            f'<tr><td colspan="4">The event store is not available: {escape(str(exc))}</td></tr>'
        ]
    table = (
        "<table><thead><tr><th>When (UTC)</th><th>Type</th><th>Name</th><th>Path</th></tr>"
        f"</thead><tbody>{''.join(rows[-30:])}</tbody></table>"
    )
    body = (
        "<h1>What we recorded</h1>"
        f"<p>Events tied to your pseudonymous visitor id <code>{escape(visitor)}</code> "
        "(recorded in the background; reload to see the latest).</p>"
        f"{table}"
    )
    return _html(request, "What we recorded", body)


def _privacy(request: Request) -> Response:
    body = (
        "<h1>Privacy policy</h1>"
        '<p class="lead">The site&rsquo;s own policy page (linked from the banner).</p>'
        "<p>We recognise your domain name and e-mail address where possible, and use "
        "aggregate information about our visitors to improve our content. We use cookies for "
        "your preferences, your session and your cart. See the "
        '<a href="/_consent/policy">cookie notice</a> for every purpose and cookie, and '
        '<a href="/_consent/preferences">change your choices</a> at any time.</p>'
    )
    return _html(request, "Privacy policy", body)


def _static(request: Request) -> Response:
    name = request.path.rsplit("/", 1)[-1]
    files: dict[str, tuple[bytes, str]] = {
        "demo.css": (_STYLE.encode(), "text/css"),
        "analytics.js": (_ANALYTICS_JS.encode(), "text/javascript"),
        "marketing.js": (_MARKETING_JS.encode(), "text/javascript"),
        "demo.js": (_DEMO_JS.encode(), "text/javascript"),
        "pixel.gif": (_PIXEL, "image/gif"),
    }
    found = files.get(name)
    if found is None:
        return _not_found(request)
    data, mimetype = found
    response = Response(data, mimetype=mimetype)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


def _html(request: Request, title: str, body: str, *, scripts: str = "") -> Response:
    return Response(_layout(request, title, body, scripts=scripts), mimetype="text/html")


def _redirect(location: str) -> Response:
    return Response("", status=303, headers={"Location": location})


def _not_found(request: Request) -> Response:
    response = _html(request, "Not found", '<h1>Not found</h1><p><a href="/">Home</a></p>')
    response.status_code = 404
    return response


def demo_site(sinks: Callable[[], Iterable[Any]] = tuple) -> Callable[..., Iterable[bytes]]:
    """The example site itself (a WSGI application), without the middleware.

    ``sinks`` returns the sinks the "What we recorded" page may query.
    """

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # A fresh nonce per request, announced in a strict CSP: consentmw puts it on
        # everything it injects.
        nonce = secrets.token_urlsafe(16)
        environ[NONCE_KEY] = nonce
        request = Request(environ)
        path = request.path
        method = request.method
        response: Response
        if path == "/" and method in ("GET", "HEAD"):
            response = _home(request)
        elif path == "/docs":
            response = _docs(request)
        elif path == "/theme" and method == "POST":
            response = _theme(request)
        elif path == "/downloads":
            response = _downloads(request)
        elif path == "/files/whitepaper.txt":
            response = _whitepaper(request)
        elif path == "/contact" and method in ("GET", "HEAD", "POST"):
            response = _contact(request)
        elif path in ("/cart", "/cart/add", "/cart/clear"):
            response = _cart(request)
        elif path == "/recorded":
            response = _recorded(request, sinks)
        elif path == "/privacy":
            response = _privacy(request)
        elif path.startswith("/static/"):
            response = _static(request)
        elif path == "/favicon.ico":
            response = Response(status=204)
        else:
            response = _not_found(request)
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
                f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; object-src 'none'; "
                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
            )
        return response(environ, start_response)

    return app


def make_app(data_dir: str | os.PathLike[str]) -> ConsentMiddleware:
    """The demo site wrapped in the middleware, keeping its data in ``data_dir`` (the
    secret key and ``events.db``). Call ``.close()`` on it when done."""
    holder: list[ConsentMiddleware] = []
    middleware = ConsentMiddleware(
        demo_site(lambda: holder[0].sinks.values() if holder else ()), demo_config(data_dir)
    )
    holder.append(middleware)
    return middleware


# ----------------------------------------------------------------------------- command


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument(
        "--data",
        default="./consentmw-demo",
        metavar="DIR",
        help="where the secret key and events.db live (default ./consentmw-demo)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the demo on 127.0.0.1 until interrupted; the exit code."""
    from werkzeug.serving import make_server

    if not 0 <= args.port <= 65535:
        sys.stderr.write("consentmw: --port must be between 0 and 65535\n")
        return 2
    # Bind here: werkzeug would print and sys.exit() on a busy port.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        sys.stderr.write(f"consentmw: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}\n")
        return 2
    app = make_app(args.data)
    with listener:
        server = make_server("127.0.0.1", args.port, app, threaded=True, fd=listener.fileno())
    data = Path(args.data).resolve()
    sys.stdout.write(
        f"consentmw demo: http://127.0.0.1:{server.port}/\n"
        f"  data: {data} (events.db, secret.key)\n  stop with Ctrl+C\n"
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return 0


#: Sub-commands for ``consentmw`` (see ``consentmw.cli``).
COMMANDS = [
    ("demo", "run a small example site with the consent banner on 127.0.0.1", _add_arguments)
]
