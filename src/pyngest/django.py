"""Serve Inngest functions from Django: add ``pyngest.django.serve(client, fns)`` to urlpatterns."""

from __future__ import annotations

from typing import Any

import django.http
import django.urls
import django.views.decorators.csrf
from django.conf import settings

from pyngest.protocol.opcodes import MAX_SDK_REQUEST_BYTES
from pyngest.sdk import config
from pyngest.sdk.client import Inngest
from pyngest.sdk.config import Streaming
from pyngest.sdk.function import Function
from pyngest.sdk.handler import CommHandler, Request, Response, lower_headers

FRAMEWORK = "django"


def _body(request: django.http.HttpRequest) -> bytes:
    """The request body, accepted up to the protocol's limit even where Django's is lower.

    Servers send execution requests of up to 4 MiB (larger state goes through ``use_api``), but
    ``request.body`` refuses anything over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, 2.5 MiB by default
    (Django answers 400 and the run fails). The setting bounds what a request can make the
    app hold; here the protocol's bound takes its place when it is the larger one, and bodies
    over both are still refused by Django.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes
    if limit is None or length <= limit or length > MAX_SDK_REQUEST_BYTES:
        body = request.body
    else:
        body = request.read()
    return body


def _request(request: django.http.HttpRequest) -> Request:
    return Request(
        method=request.method or "GET",
        body=_body(request),
        headers=lower_headers(request.headers.items()),
        query=dict(request.GET.items()),
        url=request.build_absolute_uri(),
        raw_request=request,
    )


def _response(res: Response) -> django.http.HttpResponse:
    out = django.http.HttpResponse(content=res.body, status=res.status)
    for k, v in res.headers.items():
        out[k] = v
    return out


def serve(
    client: Inngest,
    functions: list[Function[Any]],
    *,
    enable_unauthed_sync: bool | None = None,
    public_path: str | None = None,
    serve_origin: str | None = None,
    serve_path: str | None = None,
) -> django.urls.URLPattern:
    """A URL pattern for the Inngest endpoint (``api/inngest`` by default).

    With any async function the view is async (run it under ASGI for concurrency);
    otherwise it is a plain view.
    """
    handler = CommHandler(
        client=client,
        framework=FRAMEWORK,
        functions=functions,
        streaming=Streaming.DISABLE,  # this adapter writes whole bodies
        enable_unauthed_sync=enable_unauthed_sync,
        public_path=public_path,
        serve_origin=serve_origin,
        serve_path=serve_path,
    )
    path = (config.serve_path(serve_path) or config.DEFAULT_SERVE_PATH).lstrip("/")
    if any(fn.is_handler_async for fn in functions):

        async def inngest_api_async(request: django.http.HttpRequest) -> django.http.HttpResponse:
            return _response(await handler.handle(_request(request)))

        view: Any = inngest_api_async
    else:

        def inngest_api(request: django.http.HttpRequest) -> django.http.HttpResponse:
            return _response(handler.handle_sync(_request(request)))

        view = inngest_api
    return django.urls.path(path, django.views.decorators.csrf.csrf_exempt(view))
