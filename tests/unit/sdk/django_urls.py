"""A URLconf for the Django adapter tests; tests append their patterns."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings

urlpatterns: list[Any] = []


def setup() -> None:
    """Configure a minimal Django once per process (settings are global)."""
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="test-only",  # noqa: S106
            DEBUG=False,
            USE_TZ=True,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()


def add(pattern: Any) -> None:
    from django.urls import clear_url_caches

    urlpatterns.append(pattern)
    clear_url_caches()
