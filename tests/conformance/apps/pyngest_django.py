"""Conformance app: pyngest's own SDK (``import pyngest as inngest``, async handlers) in a
single-file Django project, through ``pyngest.django``, served over ASGI by uvicorn.

The functions are those of ``functions_async.py``. With async functions ``pyngest.django``
makes an async view, which Django runs on the server's event loop under ASGI (sync views there
would all share one thread). The settings are Django's defaults but for what a project must
set. Run as a script: ``PORT=... CONFORMANCE_LOG=... python pyngest_django.py``; see
``common.py``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402
import django.http  # noqa: E402
import django.urls  # noqa: E402
from django.conf import settings  # noqa: E402
from frameworks import client, run_asgi  # noqa: E402
from functions_async import functions  # noqa: E402

import pyngest as inngest  # noqa: E402
import pyngest.django  # noqa: E402

KIND = "pyngest_django"

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    SECRET_KEY="conformance-only",  # noqa: S106 (no sessions, no signing: nothing to protect)
    DEBUG=False,
    USE_TZ=True,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402 (needs the settings)

inngest_client = client(inngest, KIND, sync=False)


async def healthz(request: django.http.HttpRequest) -> django.http.JsonResponse:
    return django.http.JsonResponse({"ok": True, "app_id": inngest_client.app_id})


urlpatterns: list[Any] = [
    inngest.django.serve(inngest_client, functions(inngest, inngest_client, KIND)),
    django.urls.path("healthz", healthz),
]

application = get_asgi_application()

if __name__ == "__main__":
    run_asgi(application)
