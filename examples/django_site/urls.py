"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from django_site.ledger import views

urlpatterns = [
    path("transfer", views.transfer),
    path("total", views.total),
    path("connections", views.open_connections),
]
