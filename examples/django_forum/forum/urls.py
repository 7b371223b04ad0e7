from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("forums/<slug:slug>", views.forum, name="forum"),
    path("forums/<slug:slug>/post", views.post, name="post"),
    path("support/", views.support, name="support"),
    path("support/tickets/new", views.new_ticket, name="new_ticket"),
    path("login", auth_views.LoginView.as_view(template_name="forum/login.html"), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
]
