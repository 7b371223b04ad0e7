"""The banner in a real browser: Debian's Chromium driven by playwright, against the demo site
served on a loopback port.

Skipped unless Chromium and playwright are there; with ``CONSENTMW_REQUIRE_BROWSER=1`` (CI)
a missing browser fails the run instead. Set ``CONSENTMW_SCREENSHOTS=docs/screenshots`` to
refresh the screenshots in the documentation (by default they go to a temporary directory).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consentmw.demo import make_app

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the chromium_path fixture skips, or fails with CONSENTMW_REQUIRE_BROWSER=1
    expect = sync_playwright = None

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ANALYTICS_COOKIES = {"_ga_demo", "demo_visits"}
MARKETING_COOKIES = {"_mkt_demo", "demo_campaign"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo on a free loopback port, served from a thread."""
    from werkzeug.serving import make_server

    app = make_app(tmp_path_factory.mktemp("demo"))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.close(timeout=5)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    with sync_playwright() as driver:
        instance = driver.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class Visit:
    """One browser context (a fresh visitor) and its page, collecting console problems."""

    def __init__(self, browser: Any, base_url: str, **options: Any) -> None:
        self.context = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 800}, locale="en-GB", **options
        )
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(message.text)

    def cookies(self) -> set[str]:
        return {c["name"] for c in self.context.cookies()}

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def active(self) -> dict[str, str]:
        """The focused element: its id, tag, text and whether it is inside the banner."""
        result: dict[str, str] = self.page.evaluate(
            """() => { const el = document.activeElement;
                return { id: el.id || "", tag: el.tagName, text: (el.textContent || "").trim(),
                         inBanner: String(!!el.closest("#cmw-banner")) }; }"""
        )
        return result


@pytest.fixture
def visit(browser: Any, site: str) -> Iterator[Visit]:
    current = Visit(browser, site)
    try:
        yield current
    finally:
        current.context.close()
    # Strict CSP with a nonce on the demo: anything refused (an inline script, a style
    # attribute, eval) would show up here.
    assert current.problems == []


@pytest.fixture
def no_js_visit(browser: Any, site: str) -> Iterator[Visit]:
    current = Visit(browser, site, java_script_enabled=False)
    try:
        yield current
    finally:
        current.context.close()


def screenshot_dir(tmp_path: Path) -> Path:
    target = os.environ.get("CONSENTMW_SCREENSHOTS")
    path = Path(target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_first_visit_shows_the_banner_and_sets_no_tracking_cookie(
    visit: Visit, tmp_path: Path
) -> None:
    page = visit.page
    page.goto("/")
    banner = page.locator("#cmw-banner")
    expect(banner).to_be_visible()
    expect(page.get_by_role("dialog", name="Your privacy choices")).to_be_visible()
    for name in ("Reject all", "Customise", "Accept all"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_visible()
    # Focus is moved into the dialog.
    assert visit.active()["id"] == "cmw-dialog"
    assert not visit.cookies() & (ANALYTICS_COOKIES | MARKETING_COOKIES)
    assert visit.cookies() <= {"cmw_session", "demo_cookie_check"}
    assert visit.js("window.demoAnalytics") is None
    assert visit.js("window.demoInlineAnalytics") is None
    assert visit.js("window.demoMarketing") is None
    # Consent Mode default: denied before any choice.
    default = visit.js(
        "Array.from(window.dataLayer).map(a => Array.from(a))"
        ".find(a => a[0] === 'consent' && a[1] === 'default')[2]"
    )
    assert default["analytics_storage"] == "denied"
    assert default["security_storage"] == "granted"
    # The three buttons are the same size: equal weight.
    sizes = {
        (round(box["width"]), round(box["height"]))
        for box in (
            page.get_by_role("button", name=n, exact=True).bounding_box()
            for n in ("Reject all", "Customise", "Accept all")
        )
    }
    assert len(sizes) == 1
    shot = screenshot_dir(tmp_path) / "banner.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_reject_all_hides_the_banner_and_runs_nothing(visit: Visit) -> None:
    page = visit.page
    page.goto("/")
    visit.js("window.__sameDocument = true")
    page.get_by_role("button", name="Reject all", exact=True).click()
    expect(page.locator("#cmw-banner")).to_be_hidden()
    assert visit.js("window.__sameDocument") is True  # no reload
    assert "cmw_prefs" in visit.cookies()
    page.goto("/docs")
    expect(page.get_by_role("heading", name="Docs")).to_be_visible()
    assert page.locator("#cmw-banner").count() == 0
    expect(page.get_by_role("link", name="Cookie settings").last).to_be_visible()
    assert page.locator('script[data-consent="analytics"][type="text/plain"]').count() == 2
    assert visit.js("window.demoAnalytics") is None
    assert visit.js("window.demoInlineAnalytics") is None
    assert visit.js("document.documentElement.dataset.analytics") is None
    assert not visit.cookies() & (ANALYTICS_COOKIES | MARKETING_COOKIES)


def test_customise_grants_analytics_only_without_a_reload(visit: Visit) -> None:
    page = visit.page
    page.goto("/")
    visit.js("window.__sameDocument = true")
    page.get_by_role("button", name="Customise", exact=True).click()
    panel = page.locator("#cmw-panel")
    expect(panel).to_be_visible()
    for box in panel.get_by_role("checkbox").all():
        if box.is_enabled():
            assert not box.is_checked()  # nothing pre-ticked
    panel.get_by_label("Improve our content").check()
    panel.get_by_role("button", name="Save my choices").click()
    expect(page.locator("#cmw-banner")).to_be_hidden()
    # The gated analytics scripts run now, in this document.
    page.wait_for_function(
        "() => window.demoAnalytics === 1 && window.demoInlineAnalytics === true"
    )
    assert visit.js("window.__sameDocument") is True
    expect(page.locator("#analytics-status")).to_contain_text("running")
    expect(page.locator("#consent-status")).to_contain_text("granted: analytics, necessary")
    assert "_ga_demo" in visit.cookies()
    assert not visit.cookies() & MARKETING_COOKIES
    assert visit.js("window.demoMarketing") is None
    assert page.locator('img[data-consent="marketing"][src]').count() == 0
    update = visit.js(
        "Array.from(window.dataLayer).map(a => Array.from(a))"
        ".find(a => a[0] === 'consent' && a[1] === 'update')[2]"
    )
    assert update["analytics_storage"] == "granted"
    assert update["ad_storage"] == "denied"
    # The next page: no banner, the app's analytics cookie, still no marketing cookie.
    page.reload()
    assert page.locator("#cmw-banner").count() == 0
    page.wait_for_function("() => window.demoAnalytics === 1")
    assert "demo_visits" in visit.cookies()
    assert not visit.cookies() & MARKETING_COOKIES


def test_withdrawal_on_the_preferences_page_removes_the_analytics_cookie(
    visit: Visit, tmp_path: Path
) -> None:
    page = visit.page
    page.goto("/")
    page.get_by_role("button", name="Accept all", exact=True).click()
    page.wait_for_function("() => window.demoAnalytics === 1 && window.demoMarketing === true")
    page.reload()
    assert {"_ga_demo", "demo_visits", "_mkt_demo", "demo_campaign"} <= visit.cookies()
    page.get_by_role("link", name="Cookie settings").last.click()
    expect(page.get_by_role("heading", name="Privacy preferences")).to_be_visible()
    expect(page.get_by_label("Improve our content")).to_be_checked()
    expect(page.get_by_text("Consent receipt")).to_be_visible()
    shot = screenshot_dir(tmp_path) / "preferences.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    # One step: Reject all withdraws every optional purpose.
    page.get_by_role("button", name="Reject all", exact=True).click()
    expect(page.get_by_text("Your choices have been saved.")).to_be_visible()
    expect(page.get_by_label("Improve our content")).not_to_be_checked()
    assert not visit.cookies() & (ANALYTICS_COOKIES | MARKETING_COOKIES)
    page.goto("/")
    assert page.locator("#cmw-banner").count() == 0
    assert visit.js("window.demoAnalytics") is None


def test_keyboard_only(visit: Visit) -> None:
    page = visit.page
    page.goto("/")
    assert visit.active()["id"] == "cmw-dialog"
    reached: list[str] = []
    for _ in range(8):
        page.keyboard.press("Tab")
        current = visit.active()
        assert current["inBanner"] == "true"
        reached.append(current["text"])
        if current["text"] == "Accept all":
            break
    assert {"Reject all", "Customise", "Accept all"} <= set(reached)
    # Back to Customise, open the second layer with Enter: focus moves into it.
    page.keyboard.press("Shift+Tab")
    assert visit.active()["text"] == "Customise"
    page.keyboard.press("Enter")
    expect(page.locator("#cmw-panel")).to_be_visible()
    assert visit.active()["tag"] == "INPUT"
    # Escape closes the second layer and returns focus to Customise.
    page.keyboard.press("Escape")
    expect(page.locator("#cmw-panel")).to_be_hidden()
    assert visit.active()["id"] == "cmw-customise"
    page.keyboard.press("Enter")
    expect(page.locator("#cmw-panel")).to_be_visible()
    page.keyboard.press("Space")  # ticks the first optional purpose
    expect(page.get_by_label("Remember your settings")).to_be_checked()
    for _ in range(12):
        page.keyboard.press("Tab")
        if visit.active()["text"] == "Save my choices":
            break
    page.keyboard.press("Enter")
    expect(page.locator("#cmw-banner")).to_be_hidden()
    # Focus is returned to the page (the settings link), not lost in the hidden dialog.
    current = visit.active()
    assert current["inBanner"] == "false"
    assert current["text"] == "Cookie settings"
    assert "cmw_prefs" in visit.cookies()
    page.reload()
    assert page.locator("#cmw-banner").count() == 0


def test_keyboard_enter_on_reject_all(visit: Visit) -> None:
    page = visit.page
    page.goto("/")
    for _ in range(8):
        page.keyboard.press("Tab")
        if visit.active()["text"] == "Reject all":
            break
    page.keyboard.press("Enter")
    expect(page.locator("#cmw-banner")).to_be_hidden()
    assert visit.active()["text"] == "Cookie settings"
    assert "cmw_prefs" in visit.cookies()


def test_without_javascript(no_js_visit: Visit) -> None:
    page = no_js_visit.page
    page.goto("/contact")
    expect(page.locator("#cmw-banner")).to_be_visible()
    page.get_by_role("button", name="Reject all", exact=True).click()
    # The form posted and came back to the same page, now without the banner.
    page.wait_for_url("**/contact")
    expect(page.get_by_role("heading", name="Contact")).to_be_visible()
    assert page.locator("#cmw-banner").count() == 0
    assert "cmw_prefs" in no_js_visit.cookies()
    assert not no_js_visit.cookies() & (ANALYTICS_COOKIES | MARKETING_COOKIES)


def test_without_javascript_customise_goes_through_the_preferences_page(
    no_js_visit: Visit,
) -> None:
    page = no_js_visit.page
    page.goto("/docs")
    page.get_by_role("button", name="Customise", exact=True).click()
    page.wait_for_url("**/_consent/preferences?next=%2Fdocs")
    page.get_by_label("Improve our content").check()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_url("**/docs")
    assert page.locator("#cmw-banner").count() == 0
    page.goto("/")
    expect(page.locator("#consent-status")).to_contain_text("analytics")
    assert "demo_visits" in no_js_visit.cookies()
    assert not no_js_visit.cookies() & MARKETING_COOKIES


def test_a_failed_json_request_falls_back_to_the_form(visit: Visit) -> None:
    page = visit.page

    def refuse_fetch(route: Any) -> None:
        if route.request.resource_type == "fetch":
            route.fulfill(status=503, body="down")
        else:
            route.continue_()

    page.route("**/_consent", refuse_fetch)
    page.goto("/docs")
    visit.js("window.__sameDocument = true")
    with page.expect_navigation():
        page.get_by_role("button", name="Accept all", exact=True).click()
    # The plain form POST went through and came back to the page.
    assert page.url.endswith("/docs")
    assert visit.js("window.__sameDocument") is None
    assert page.locator("#cmw-banner").count() == 0
    page.wait_for_function("() => window.demoAnalytics === 1 && window.demoMarketing === true")
    # The refused fetch is the one console error this test expects.
    visit.problems = [p for p in visit.problems if "503" not in p]
