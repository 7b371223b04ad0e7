"""URLs of the minimal Django project the ``frameworks`` benchmark builds in memory."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def hello(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("Hello, World!")
    response.set_cookie("_ga_X", "1")
    return response


urlpatterns = [path("", hello)]
