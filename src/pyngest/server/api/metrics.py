"""``GET /metrics``: Prometheus exposition with upstream's metric names."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pyngest.server.service import Service


class MetricsAPI:
    def __init__(self, service: Service) -> None:
        self.s = service

    async def scrape(self, request: Request) -> Response:
        registry = self.s.registry
        running = self.s.metrics.running
        scheduled: dict[str, int] = {}
        # A stored EXECUTE job is a request waiting for its turn or in flight; in flight ones
        # are counted as running, the rest as scheduled.
        for fn_id, n in (await self.s.store.execute_jobs_by_function()).items():
            fn = registry.functions.get(fn_id)
            slug = fn.slug if fn is not None else fn_id
            waiting = n - running.get(slug, 0)
            if waiting > 0:
                scheduled[slug] = waiting
        body = self.s.metrics.render(scheduled)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
