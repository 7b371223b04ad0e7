"""Forum posts and support tickets."""

from __future__ import annotations

from django.db import models


class Post(models.Model):
    forum = models.SlugField()
    author = models.CharField(max_length=80)
    email = models.EmailField()
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]


class Ticket(models.Model):
    email = models.EmailField()
    phone = models.CharField(max_length=40, blank=True)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
