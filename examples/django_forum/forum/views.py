"""Views of the forums: posting and support tickets are recorded by the rules in
``consentmw.toml`` (``forum_post``, ``support_ticket``) without any code here; the views only
read ``request.consentmw`` to say what the visitor allowed."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .models import Post, Ticket

FORUMS = {
    "general": "General discussion",
    "extras": "Extras and add-ons",
    "development": "Core development",
}


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "forum/index.html", {"forums": FORUMS, "recent": Post.objects.all()[:5]})


def forum(request: HttpRequest, slug: str) -> HttpResponse:
    if slug not in FORUMS:
        return HttpResponse("no such forum", status=404, content_type="text/plain")
    context = {"slug": slug, "title": FORUMS[slug], "posts": Post.objects.filter(forum=slug)}
    return render(request, "forum/forum.html", context)


@require_POST
def post(request: HttpRequest, slug: str) -> HttpResponse:
    body = request.POST.get("body", "").strip()
    email = request.POST.get("email", "").strip()
    if slug not in FORUMS or not body or "@" not in email:
        return HttpResponseBadRequest("give an e-mail address and a message")
    author = request.user.get_username() if request.user.is_authenticated else "guest"
    Post.objects.create(forum=slug, author=author, email=email, body=body)
    messages.info(request, "Posted.")
    return redirect("forum", slug=slug)


def support(request: HttpRequest) -> HttpResponse:
    return render(request, "forum/support.html")


@require_POST
def new_ticket(request: HttpRequest) -> HttpResponse:
    data = {k: request.POST.get(k, "").strip() for k in ("email", "phone", "subject", "body")}
    if "@" not in data["email"] or not data["subject"]:
        return HttpResponseBadRequest("give an e-mail address and a subject")
    ticket = Ticket.objects.create(**data)
    messages.info(request, f"Ticket {ticket.pk} is open; we will be in touch.")
    return redirect("support")
