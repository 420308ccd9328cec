"""The Django example's routes: a write, a read, and the process's stats."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from examples.django_app import views

urlpatterns = [
    path("notes", views.add_note),
    path("notes/latest", views.latest_note),
    path("stats", views.stats),
]
