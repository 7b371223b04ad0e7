from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("downloads/<str:name>", views.download),
    path("form/", views.form),
    path("session/", views.session),
    path("language/", views.language),
    path("undeclared/", views.undeclared),
    path("raw-header/", views.raw_header),
    path("stream/", views.stream),
    path("tags/", views.tags),
    path("record/", views.record),
    path("context/", views.context),
    path("long/", views.long_page),
]
