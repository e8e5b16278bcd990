"""Reading request bodies with a size limit enforced as they arrive.

A body is refused (413) before any of it is read when ``Content-Length`` announces more than the
limit, and as soon as the bytes received pass the limit otherwise (chunked uploads), so a request
never holds more than its limit in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from starlette.requests import Request
from starlette.types import Receive

# Every route's body is capped at this unless the route has a lower limit of its own (the event
# routes and GraphQL do). App syncs and checkpoints are the largest bodies SDKs send.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


class BodyTooLarge(Exception):
    """The request body is over ``limit`` bytes."""

    def __init__(self, limit: int, what: str = "request body") -> None:
        super().__init__(f"The {what} is over the size limit of {limit} bytes")
        self.limit = limit


def announced_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The body size ``Content-Length`` announces, if it is given and a number."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_limited(chunks: AsyncIterator[bytes], announced: int | None, limit: int) -> bytes:
    """Collect a body, raising BodyTooLarge before reading when the announced size is over
    ``limit`` and as soon as what arrived is."""
    if announced is not None and announced > limit:
        raise BodyTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


async def asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body of an ASGI request, chunk by chunk."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


async def request_body(request: Request, limit: int) -> bytes:
    """``request.body()`` with ``limit``; later ``request.body()`` calls get the same bytes."""
    cached = getattr(request, "_body", None)
    if cached is not None:
        if len(cached) > limit:
            raise BodyTooLarge(limit)
        return bytes(cached)
    body = await read_limited(request.stream(), announced_length(request.scope["headers"]), limit)
    request._body = body
    return body
