"""A plain WSGI site (MODX documentation and downloads) wrapped in consentmw.

Run it::

    python examples/wsgi_site.py                 # http://127.0.0.1:8000
    python examples/wsgi_site.py --self-test     # a few requests in-process; exit status 0/1

It reads ``consentmw.toml`` next to this file (the MODX policy) and keeps its events in
SQLite under ``--data`` (default ``examples/data/wsgi_site``; a temporary directory for the
self-test). ``CONSENTMW_SECRET_KEYS`` holds the signing keys; when it is not set, a throwaway
key is made for the run and the site says so.

The application itself knows nothing about consent beyond ``consentmw.get_context``: it sets
an analytics cookie on every page (the middleware removes it while analytics is not granted),
serves downloads as attachments (recorded as ``download`` actions), takes contact and bug
forms (recorded by the rules in the configuration) and keeps what was downloaded in the
signed session.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from consentmw import ConsentMiddleware, get_context

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "consentmw.toml"
KEYS_VARIABLE = "CONSENTMW_SECRET_KEYS"
DOWNLOADS = {"modx-2.3.2.zip": b"PK\x05\x06" + bytes(18), "release-notes.txt": b"MODX 2.3.2\n"}


def example_config(data_dir: Path, *, site: str) -> dict[str, Any]:
    """``consentmw.toml`` with what running on http://127.0.0.1 needs: the events in
    ``data_dir``, cookies neither ``Secure`` nor shared with a parent domain, no reverse DNS,
    no proxy in front."""
    with CONFIG.open("rb") as handle:
        data = tomllib.load(handle)
    data_dir.mkdir(parents=True, exist_ok=True)
    data["site"]["name"] = site
    data["sinks"] = {"events": ["sqlite:///" + str(data_dir.resolve() / "events.db")]}
    data["cookie_settings"]["secure"] = False
    data["cookie_settings"].pop("domain", None)
    data["resolve"]["reverse_dns"] = False
    data["resolve"]["trusted_proxies"] = 0
    return data


def ensure_secret_key() -> bool:
    """Make a throwaway signing key when ``CONSENTMW_SECRET_KEYS`` is not set; ``True`` if
    one was made."""
    if os.environ.get(KEYS_VARIABLE):
        return False
    os.environ[KEYS_VARIABLE] = secrets.token_urlsafe(32)
    return True


# ----------------------------------------------------------------------------- the site


def page(title: str, body: str) -> Response:
    return Response(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)} · MODX docs</title></head><body>"
        "<nav><a href='/'>Home</a> · <a href='/extras/'>Extras</a> · "
        "<a href='/downloads/'>Downloads</a> · <a href='/contact'>Contact</a> · "
        "<a href='/privacy'>Privacy</a></nav>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>",
        content_type="text/html; charset=utf-8",
    )


def home(request: Request) -> Response:
    ctx = get_context(request.environ)
    granted = ", ".join(sorted(ctx.consent.granted))
    downloaded = ", ".join(ctx.session.get("downloads", [])) or "nothing yet"
    response = page(
        "MODX documentation",
        f"<p>Your consent: {escape(granted)}.</p><p>Downloaded: {escape(downloaded)}.</p>",
    )
    # The site's own analytics cookie: it leaves the server only when analytics is granted.
    visits = request.cookies.get("site_visits", "0")
    count = int(visits) + 1 if visits.isdigit() else 1
    response.set_cookie("site_visits", str(count), max_age=30 * 86400, httponly=True)
    return response


def downloads(request: Request, name: str) -> Response:
    if not name:
        links = "".join(f"<li><a href='/downloads/{n}'>{n}</a></li>" for n in DOWNLOADS)
        return page("Downloads", f"<ul>{links}</ul>")
    if name not in DOWNLOADS:
        return Response("not found", status=404)
    ctx = get_context(request.environ)
    # "items downloaded" live in the signed session (necessary).
    ctx.session["downloads"] = [*ctx.session.get("downloads", []), name][-10:]
    return Response(
        DOWNLOADS[name],
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def contact(request: Request) -> Response:
    if request.method == "POST":
        # The contact_form rule records the request (email, phone, subject) for support, from
        # the form fields this view reads.
        subject = request.form.get("subject", "your message")
        return page("Thank you", f"<p>We will answer {escape(subject)} soon.</p>")
    return page(
        "Contact",
        "<form method='post'><label>E-mail <input name='email' type='email'></label>"
        "<label>Phone <input name='phone'></label><label>Subject <input name='subject'>"
        "</label><textarea name='message'></textarea><button>Send</button></form>",
    )


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """The site as a WSGI application (consentmw wraps it in :func:`make_app`)."""
    request = Request(environ)
    path = request.path
    if path == "/":
        response = home(request)
    elif path.startswith("/downloads/"):
        response = downloads(request, path[len("/downloads/") :])
    elif path == "/contact":
        response = contact(request)
    elif path == "/bugs/new" and request.method == "POST":
        title = request.form.get("title", "your report")
        response = page("Bug filed", f"<p>Thank you for {escape(title)}.</p>")
    elif path.startswith("/extras/"):
        response = page("Extras", "<p>Add-ons for MODX.</p>")
    elif path == "/privacy":
        response = page("Privacy policy", "<p>See <a href='/_consent/policy'>the notice</a>.</p>")
    else:
        response = Response("not found", status=404, content_type="text/plain")
    return response(environ, start_response)


def make_app(data_dir: Path, **options: Any) -> ConsentMiddleware:
    """The site wrapped in consentmw, its events in SQLite under ``data_dir``."""
    return ConsentMiddleware(app, example_config(data_dir, site="docs.modx.com"), **options)


# ----------------------------------------------------------------------------- self-test


def self_test() -> bool:
    """Banner, reject, accept analytics, a recorded download, a declined cookie stripped and
    withdrawal, in-process with werkzeug's test client. ``True`` when everything held."""
    from werkzeug.datastructures import MultiDict
    from werkzeug.test import Client

    if ensure_secret_key():
        print(f"{KEYS_VARIABLE} is not set: using a throwaway key for this self-test")
    failures: list[str] = []

    def check(what: str, ok: bool) -> None:
        print(("ok      " if ok else "FAILED  ") + what)
        if not ok:
            failures.append(what)

    # An opt-in jurisdiction: nothing optional is on until the visitor chooses.
    headers = {"CF-IPCountry": "DE", "Sec-Fetch-Site": "same-origin"}
    with tempfile.TemporaryDirectory(prefix="consentmw-wsgi-site-") as tmp:
        site = make_app(Path(tmp))
        client = Client(site)

        def choose(choice: str, *purposes: str) -> int:
            token = client.get("/_consent", headers=headers).get_json()["csrf"]
            form = [("choice", choice), ("csrf", token), ("next", "/")]
            form += [("purpose", p) for p in purposes]
            return client.post("/_consent", data=MultiDict(form), headers=headers).status_code

        def sent(response: Any, name: str) -> list[str]:
            return [c for c in response.headers.getlist("Set-Cookie") if c.startswith(name + "=")]

        try:
            first = client.get("/", headers=headers)
            check("the banner is shown on the first visit", 'id="cmw-banner"' in first.text)
            check("the analytics cookie is stripped at first", not sent(first, "site_visits"))
            check("reject all is accepted", choose("reject_all") == 303)
            after = client.get("/", headers=headers)
            check("no banner after the choice", 'id="cmw-banner"' not in after.text)
            check("the declined analytics cookie is stripped", not sent(after, "site_visits"))
            check("accepting analytics is accepted", choose("custom", "analytics") == 303)
            granted = client.get("/", headers=headers)
            check("the analytics cookie goes out once granted", bool(sent(granted, "site_visits")))
            download = client.get("/downloads/modx-2.3.2.zip", headers=headers)
            check("the download is served", download.status_code == 200)
            withdrawn = client.get("/_consent", headers=headers).get_json()["csrf"]
            form = MultiDict([("choice", "reject_all"), ("csrf", withdrawn), ("next", "/")])
            expiry = client.post("/_consent", data=form, headers=headers)
            check(
                "withdrawal expires the analytics cookie",
                any("Max-Age=0" in c for c in sent(expiry, "site_visits")),
            )
            check("the events are written", site.flush(10))
            sink = next(iter(site.sinks.values()))
            found = list(sink.query(type="action"))  # type: ignore[attr-defined]
            check(
                "the download is recorded with the visitor id",
                any(e.name == "download" and e.visitor_id for e in found),
            )
        except Exception as exc:  # a broken step is a failed self-test, not a traceback
            check(f"the self-test ran to the end ({type(exc).__name__}: {exc})", False)
        finally:
            site.close(timeout=10)
    print("self-test " + ("passed" if not failures else f"failed: {len(failures)} check(s)"))
    return not failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "wsgi_site")
    parser.add_argument("--self-test", action="store_true", help="run the self-test and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        return 0 if self_test() else 1
    from wsgiref.simple_server import make_server

    if ensure_secret_key():
        print(f"{KEYS_VARIABLE} is not set: using a throwaway key (cookies end with the process)")
    site = make_app(args.data)
    print(f"MODX docs with consentmw on http://127.0.0.1:{args.port}/ (Ctrl-C stops)")
    try:
        with make_server("127.0.0.1", args.port, site) as server:
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        site.close(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
