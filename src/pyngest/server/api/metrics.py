"""``GET /metrics``: Prometheus exposition with upstream's metric names, for one environment.

As upstream's export is a scrape endpoint per environment, a scrape reads the environment the
request selects, as every management API does: a custom environment's signing key selects its
own, ``x-inngest-env`` (a header, or the query parameter a Prometheus ``params:`` block sets)
names one; nothing selected is the default environment. Labels stay upstream's (docs/operations.md).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pyngest.server.api.common import api_error
from pyngest.server.api.envs import request_env
from pyngest.server.environments import EnvError
from pyngest.server.service import Service


class MetricsAPI:
    def __init__(self, service: Service) -> None:
        self.s = service

    async def scrape(self, request: Request) -> Response:
        try:
            env_id = await request_env(request, self.s)
        except EnvError as exc:
            return api_error(exc.message, exc.status)
        registry = self.s.registry
        running = self.s.metrics.running_in(env_id)
        scheduled: dict[str, int] = {}
        # A stored EXECUTE job is a request waiting for its turn or in flight; in flight ones
        # are counted as running, the rest as scheduled.
        for fn_id, n in (await self.s.store.execute_jobs_by_function()).items():
            fn = registry.functions.get(fn_id)
            if fn is None or fn.env_id != env_id:
                continue
            waiting = n - running.get(fn.slug, 0)
            if waiting > 0:
                scheduled[fn.slug] = waiting
        body = self.s.metrics.render(env_id, scheduled)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
