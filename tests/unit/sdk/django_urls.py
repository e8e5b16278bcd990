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
    """Serve ``pattern``, in place of an earlier one for the same route (a test run twice)."""
    from django.urls import clear_url_caches

    urlpatterns[:] = [p for p in urlpatterns if str(p.pattern) != str(pattern.pattern)]
    urlpatterns.append(pattern)
    clear_url_caches()
