"""The demo site, driven in-process: what the middleware does to it, and the command."""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.test import Client

from consentmw import ConsentMiddleware
from consentmw.cli import build_parser, main
from consentmw.demo import demo_config, make_app, run

from .conftest import SAME_ORIGIN, Tags


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[ConsentMiddleware]:
    app = make_app(tmp_path / "data")
    yield app
    app.close(timeout=5)


def cookies_set(response: object) -> set[str]:
    return {v.split("=", 1)[0] for v in response.headers.getlist("Set-Cookie")}  # type: ignore[attr-defined]


def decide(client: Client, choice: str, *purposes: str) -> None:
    csrf = client.get("/_consent").get_json()["csrf"]
    data = [("choice", choice), ("csrf", csrf), ("next", "/")] + [("purpose", p) for p in purposes]
    response = client.post("/_consent", data=MultiDict(data), headers=SAME_ORIGIN)
    assert response.status_code == 303


def test_first_visit(demo: ConsentMiddleware) -> None:
    client = Client(demo)
    response = client.get("/")
    text = response.get_data(as_text=True)
    assert 'id="cmw-banner"' in text
    # Only the strictly necessary cookies: the app's own and our session (for the token).
    assert cookies_set(response) == {"demo_cookie_check", "cmw_session"}
    tags = Tags(text)
    gated = [a for a in tags.find("script") if a.get("data-consent")]
    assert len(gated) == 3
    assert all(a["type"] == "text/plain" for a in gated)
    assert tags.find("img", data_consent="marketing")[0]["data-src"] == "/static/pixel.gif"
    # Every injected script and link carries the nonce the page's CSP announces.
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    assert nonce is not None
    injected = [a for t, a in tags.tags if t in ("script", "link") and "/_consent/" in str(a)]
    assert len(injected) == 3
    assert {a["nonce"] for a in injected} == {nonce.group(1)}


def test_cookies_follow_the_choice(demo: ConsentMiddleware) -> None:
    client = Client(demo)
    client.get("/")
    decide(client, "custom", "analytics")
    response = client.get("/")
    assert {"demo_visits", "demo_cookie_check"} <= cookies_set(response)
    assert "demo_campaign" not in cookies_set(response)
    tags = Tags(response.get_data(as_text=True))
    scripts = {a.get("src") or a.get("data-src") or "inline": a for a in tags.find("script")}
    assert "type" not in scripts["/static/analytics.js"]
    assert scripts["/static/marketing.js"]["type"] == "text/plain"
    response = client.post("/theme", data={"theme": "dark"}, headers=SAME_ORIGIN)
    assert "demo_theme" not in cookies_set(response)
    decide(client, "accept_all")
    response = client.post("/theme", data={"theme": "dark"}, headers=SAME_ORIGIN)
    assert "demo_theme" in cookies_set(response)


def test_download_cart_and_contact_are_recorded(demo: ConsentMiddleware) -> None:
    client = Client(demo)
    client.get("/")
    decide(client, "custom", "analytics")
    download = client.get("/files/whitepaper.txt")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert b"cmw-banner" not in download.get_data()
    client.post("/cart/add", data={"item": "mug"})
    assert client.get_cookie("cmw_cart") is not None
    assert "Coffee mug" in client.get("/cart").get_data(as_text=True)
    client.post("/contact", data={"name": "Ada", "email": "Ada@Example.org", "message": "hi"})
    assert demo.flush(10)
    page = client.get("/recorded").get_data(as_text=True)
    assert "download" in page
    assert "cart_add" in page
    assert "contact_form" in page
    sink = next(iter(demo.sinks.values()))
    events = [e.to_dict() for e in sink.query()]  # type: ignore[attr-defined]
    contact = next(e for e in events if e["name"] == "contact_form")
    assert contact["email"] == "ada@example.org"


def test_nothing_is_recorded_about_a_visitor_who_rejected(demo: ConsentMiddleware) -> None:
    client = Client(demo)
    client.get("/")
    decide(client, "reject_all")
    client.get("/files/whitepaper.txt")
    assert demo.flush(10)
    assert "Nothing about you" in client.get("/recorded").get_data(as_text=True)
    sink = next(iter(demo.sinks.values()))
    events = [e.to_dict() for e in sink.query()]  # type: ignore[attr-defined]
    assert not [e for e in events if e["type"] == "action"]
    assert all(e["visitor_id"] is None for e in events)


def test_the_secret_key_survives_a_restart(tmp_path: Path) -> None:
    first = make_app(tmp_path)
    client = Client(first)
    client.get("/")
    decide(client, "accept_all")
    first.close(timeout=5)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    second = make_app(tmp_path)
    try:
        client.application = second
        assert 'id="cmw-banner"' not in client.get("/").get_data(as_text=True)
    finally:
        second.close(timeout=5)
    config = demo_config(tmp_path)
    assert config["sinks"]["events"] == ["sqlite:///" + str(tmp_path.resolve() / "events.db")]
    assert config["cookie_settings"]["secure"] is False


def test_the_command_is_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["demo", "--port", "0", "--data", "x"])
    assert args.func is run
    assert args.port == 0
    assert args.data == "x"
    defaults = parser.parse_args(["demo"])
    assert defaults.port == 8000
    assert defaults.data == "./consentmw-demo"


def test_a_busy_port_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = run(argparse.Namespace(port=port, data=str(tmp_path)))
    assert code == 2
    assert "cannot listen" in capsys.readouterr().err
    assert main(["demo", "--port", "70000", "--data", str(tmp_path)]) == 2


@pytest.mark.slow
def test_the_command_serves_and_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "consentmw", "demo", "--port", "0", "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.match(r"consentmw demo: (http://127\.0\.0\.1:\d+/)$", first.strip())
        assert match, first
        browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
        request = urllib.request.Request(match.group(1), headers={"User-Agent": browser})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert b'id="cmw-banner"' in response.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    # The anonymous page count was written when the command stopped.
    assert (tmp_path / "events.db").exists()
