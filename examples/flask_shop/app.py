"""The MODX shop: a Flask application behind consentmw (cart, downloads, login).

Run it::

    pip install 'consentmw[flask]' flask-login
    python examples/flask_shop/app.py            # http://127.0.0.1:5000

What it shows:

- ``Consent(app)`` — the extension wraps ``app.wsgi_app``; the configuration is
  ``../consentmw.toml`` (the MODX policy) with what a laptop needs (see
  :func:`example_config`);
- the cart lives in consentmw's signed cart cookie (``context().cart``, necessary), the
  login in Flask-Login's session (Flask's session cookie is declared necessary by the
  extension, so ``undeclared = "block"`` leaves it alone);
- the signed-in user's e-mail address is the visitor's (Flask-Login), recorded on events
  only with the analytics purpose;
- purchases, downloads, log-ins and log-outs are recorded by the rules in the configuration;
  the card number is kept as its brand and last four digits only;
- the templates place the banner and the settings link themselves (``consent_banner()``,
  ``consent_settings_link()``) and test ``consent.allows("analytics")``.

Orders are kept in SQLite (``shop.db``) next to the events (``events.db``) in the data
directory: ``--data``, default ``examples/data/flask_shop``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, login_user, logout_user
from werkzeug.wrappers import Response

from consentmw.flask import Consent, context

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "consentmw.toml"
KEYS_VARIABLE = "CONSENTMW_SECRET_KEYS"

PRODUCTS = {
    "extras-pack": {"name": "Extras pack", "price": 49.0},
    "support-hour": {"name": "One hour of support", "price": 120.0},
    "t-shirt": {"name": "MODX t-shirt", "price": 20.0},
}
DOWNLOADS = {"release-notes.txt": b"MODX 2.3.2 release notes\n", "modx-2.3.2.zip": b"PK\x05\x06"}
DEMO_EMAIL = "alice@example.com"
DEMO_PASSWORD = "modx-shop"  # a demo account of a local example


def example_config(data_dir: Path) -> dict[str, Any]:
    """``../consentmw.toml`` for http://127.0.0.1: events in ``data_dir``, cookies neither
    ``Secure`` nor shared with a parent domain, no reverse DNS, no proxy in front."""
    with CONFIG.open("rb") as handle:
        data = tomllib.load(handle)
    data["site"]["name"] = "shop.modx.com"
    data["sinks"] = {"events": ["sqlite:///" + str(data_dir.resolve() / "events.db")]}
    data["cookie_settings"]["secure"] = False
    data["cookie_settings"].pop("domain", None)
    data["resolve"]["reverse_dns"] = False
    data["resolve"]["trusted_proxies"] = 0
    return data


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, email: str) -> None:
        self.id = email
        self.email = email


def _orders(data_dir: Path) -> sqlite3.Connection:
    db = sqlite3.connect(data_dir / "shop.db")
    db.execute(
        "CREATE TABLE IF NOT EXISTS orders "
        "(id INTEGER PRIMARY KEY, email TEXT, items TEXT, amount REAL, created REAL)"
    )
    return db


def create_app(data_dir: Path | None = None, **consent_options: Any) -> Flask:
    """The shop; ``consent_options`` go to :class:`consentmw.flask.Consent` (tests pass
    ``clock`` or ``sinks``)."""
    data_dir = (data_dir or HERE.parent / "data" / "flask_shop").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SHOP_SECRET_KEY") or secrets.token_hex(32)
    app.config["CONSENTMW"] = example_config(data_dir)
    app.config["DATA_DIR"] = data_dir
    Consent(app, **consent_options)  # registers itself in app.extensions["consentmw"]

    login_manager = LoginManager(app)
    login_manager.login_view = "login"
    login_manager.user_loader(lambda email: User(email) if email == DEMO_EMAIL else None)

    @app.context_processor
    def cart_count() -> dict[str, Any]:
        return {"cart_count": sum(context().cart.get("items", {}).values())}

    @app.get("/")
    def index() -> Response:
        response = app.make_response(render_template("index.html", products=PRODUCTS))
        # The shop's own analytics cookie: removed by consentmw until analytics is granted.
        visits = request.cookies.get("site_visits", "0")
        count = int(visits) + 1 if visits.isdigit() else 1
        response.set_cookie("site_visits", str(count), max_age=30 * 86400, httponly=True)
        source = request.args.get("utm_source")
        if source:  # a marketing cookie: only with the marketing purpose
            response.set_cookie("promo_source", source[:64], max_age=30 * 86400)
        return response

    @app.post("/cart/add")
    def cart_add() -> Response:
        sku = request.form.get("sku", "")
        if sku not in PRODUCTS:
            abort(400)
        cart = context().cart
        items = dict(cart.get("items", {}))
        items[sku] = items.get(sku, 0) + 1
        cart["items"] = items
        flash(f"{PRODUCTS[sku]['name']} is in your cart.")
        return redirect(url_for("index"))

    @app.get("/cart")
    def cart() -> str:
        items = sorted(context().cart.get("items", {}).items())
        total = sum(PRODUCTS[sku]["price"] * qty for sku, qty in items if sku in PRODUCTS)
        return render_template("cart.html", items=items, products=PRODUCTS, total=total)

    @app.post("/shop/checkout")
    def checkout() -> str:
        ctx = context()
        items = ctx.cart.get("items", {})
        if not items:
            abort(400)
        amount = sum(PRODUCTS[sku]["price"] * qty for sku, qty in items.items() if sku in PRODUCTS)
        # The purchase rule records email, amount, items and the card (as brand + last four).
        with _orders(data_dir) as db:
            order = db.execute(
                "INSERT INTO orders (email, items, amount, created) VALUES (?, ?, ?, ?)",
                (request.form.get("email", ""), ",".join(items), amount, time.time()),
            ).lastrowid
        ctx.cart.clear()
        return render_template("thanks.html", order_id=order)

    @app.get("/downloads/")
    def downloads() -> str:
        return render_template("downloads.html", files=sorted(DOWNLOADS))

    @app.get("/downloads/<name>")
    def download(name: str) -> Response:
        if name not in DOWNLOADS:
            abort(404)
        ctx = context()
        # "items downloaded" are session information (necessary).
        ctx.session["downloads"] = [*ctx.session.get("downloads", []), name][-10:]
        return Response(
            DOWNLOADS[name],
            mimetype="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "POST":
            email = request.form.get("email", "").strip().lower()
            if email == DEMO_EMAIL and request.form.get("password") == DEMO_PASSWORD:
                login_user(User(email))
                context().session.rotate()  # a new session id on a privilege change
                return redirect(url_for("index"))
            flash("Wrong e-mail address or password.")
        return render_template("login.html", demo_email=DEMO_EMAIL, demo_password=DEMO_PASSWORD)

    @app.post("/logout")
    def logout() -> Response:
        logout_user()
        context().session.rotate()
        return redirect(url_for("index"))

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The MODX shop example (Flask + consentmw).")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    if not os.environ.get(KEYS_VARIABLE):
        os.environ[KEYS_VARIABLE] = secrets.token_urlsafe(32)
        print(f"{KEYS_VARIABLE} is not set: using a throwaway key (cookies end with the process)")
    app = create_app(args.data)
    app.run(host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
