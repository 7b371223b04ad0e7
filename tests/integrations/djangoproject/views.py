"""Views of the test project: the acceptance scenario's pages and one view per feature the
Django tests look at (CSRF, sessions, streaming, tags, the e-mail hook)."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.csrf import ensure_csrf_cookie

from consentmw import get_context

PAGE = "<!doctype html><html><head><title>{title}</title></head><body><p>{title}</p></body></html>"


def index(request: HttpRequest) -> HttpResponse:
    """The scenario's page: HTML (the banner is inserted) and an analytics cookie."""
    response = HttpResponse(PAGE.format(title="Forums"))
    visits = request.COOKIES.get("site_visits", "0")
    count = int(visits) + 1 if visits.isdigit() else 1
    response.set_cookie("site_visits", str(count), max_age=30 * 86400, httponly=True)
    return response


def download(request: HttpRequest, name: str) -> HttpResponse:
    response = HttpResponse(b"MODX 2.3.2\n", content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@ensure_csrf_cookie
def form(request: HttpRequest) -> HttpResponse:
    """A form protected by Django's CSRF middleware (GET sets the token cookie)."""
    if request.method == "POST":
        return HttpResponse(f"posted {request.POST.get('text', '')}", content_type="text/plain")
    return render(request, "form.html")


def session(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]), content_type="text/plain")


def language(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("de", content_type="text/plain")
    translation.activate("de")
    response.set_cookie("django_language", "de")
    return response


def undeclared(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("ok", content_type="text/plain")
    response.set_cookie("tracker", "1")
    return response


def raw_header(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("ok", content_type="text/plain")
    response["Set-Cookie"] = request.GET.get("cookie", "tracker=1; Path=/; Max-Age=31536000")
    return response


def stream(request: HttpRequest) -> StreamingHttpResponse:
    produced: list[int] = []
    request.META["test.produced"] = produced

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            produced.append(i)
            yield (
                f"<!doctype html><html><body><p>part {i}</p>".encode()
                if i == 0
                else (f"<p>part {i}</p>".encode())
            )
        produced.append(3)
        yield b"</body></html>"

    return StreamingHttpResponse(chunks(), content_type="text/html; charset=utf-8")


def tags(request: HttpRequest) -> HttpResponse:
    return render(request, "tags.html")


def record(request: HttpRequest) -> HttpResponse:
    recorded = get_context(request.META).record("forum_visit", page="tags")
    return HttpResponse("yes" if recorded else "no", content_type="text/plain")


def context(request: HttpRequest) -> HttpResponse:
    same = request.consentmw is get_context(request.META)  # type: ignore[attr-defined]
    return HttpResponse(str(same), content_type="text/plain")


def long_page(request: HttpRequest) -> HttpResponse:
    """Long enough for GZipMiddleware to compress it (200 bytes or more)."""
    return HttpResponse(PAGE.format(title="Long " + "words " * 80))
