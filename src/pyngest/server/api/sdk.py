"""Routes the SDKs call: ``/fn/register``, ``/dev``, ``/health``, the ``use_api`` state
fetches, checkpointing and signals (PROTOCOL.md §2, §9)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from pyngest.protocol import headers as H
from pyngest.protocol import jcs
from pyngest.protocol.events import MAX_EVENT_DEPTH, nested_deeper_than
from pyngest.protocol.ids import is_ulid
from pyngest.protocol.opcodes import Opcode, parse_opcode
from pyngest.protocol.sync import app_url_problem
from pyngest.server.api.cluster import forward
from pyngest.server.api.common import (
    api_error,
    bearer_ok,
    json_response,
    public_error,
    unauthorized,
)
from pyngest.server.api.envs import reaches, request_env
from pyngest.server.environments import EnvError
from pyngest.server.executor.ops import step_name
from pyngest.server.model import AddHistory, Batch
from pyngest.server.registry import RegistrationError
from pyngest.server.service import Service

VERSION = "0.1.0"
_CHECKPOINT_OPS = {Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_PLANNED, Opcode.DEFER_ADD, Opcode.DEFER_ABORT}


class SdkAPI:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.config = service.config

    async def health(self, request: Request) -> Response:
        return json_response({"status": 200, "message": "OK"})

    async def dev_info(self, request: Request) -> Response:
        if self.config.mode != "dev":
            return public_error("Not found", 404)
        reg = self.service.registry
        return json_response({
            "version": VERSION,
            "authed": False,
            "startOpts": {"sdkURLs": self.config.sdk_urls, "noDiscovery": not self.config.discovery,
                          "noPoll": not self.config.poll},
            "functions": [
                {"id": f.id, "slug": f.slug, "name": f.name, "app_id": f.app_id, "config": f.config}
                for f in reg.functions.values()
            ],
            "handlers": [
                {"url": rec.url, "error": rec.error, "app_id": rec.app_id}
                for rec in self.service.syncer.urls.values()
            ],
            "isSingleNodeService": False,
            "isMissingSigningKey": not self.config.signing_key,
            "isMissingEventKeys": not self.config.event_keys,
            "features": {},
            "server": "pyngest",
        })

    async def register(self, request: Request) -> Response:
        keyed = self.config.signing_key or self.service.registry.envs.any_signing_key()
        if keyed and not bearer_ok(request, self.config):
            return unauthorized()
        expected = request.headers.get(H.EXPECTED_SERVER_KIND)
        if expected and expected != self.config.server_kind:
            return public_error(f"Expected server kind {expected}, got {self.config.server_kind}", 400)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return public_error(f"Invalid request: the body is not JSON: {exc}", 400)
        try:
            # the signing key names the environment; x-inngest-env a branch of it (made if new)
            env_id = await request_env(request, self.service, create=True)
        except EnvError as exc:
            return public_error(exc.message, exc.status)
        try:
            outcome = await self.service.registry.register(body, deploy_id=request.query_params.get("deployId"),
                                                           env_id=env_id)
        except RegistrationError as exc:
            url = body.get("url") if isinstance(body, dict) else None
            if isinstance(url, str) and url and app_url_problem(url) is None:
                await self.service.registry.record_sync_error(url, f"{exc.message}: {exc.data}" if exc.data else exc.message)
            return public_error(exc.message, exc.status, exc.data)
        await self.service.after_sync(outcome)
        if outcome.app.url:
            syncer = self.service.syncer
            from pyngest.server.registry import normalize_url

            rec = syncer.urls.get(normalize_url(outcome.app.url))
            if rec is None:
                await syncer.add(outcome.app.url, source="register", sync=False)
                rec = syncer.urls.get(normalize_url(outcome.app.url))
            syncer.registered(outcome.app.url, modified=outcome.modified)
            if rec is not None and (rec.error is not None or rec.app_id != outcome.app.id):
                rec.error = None
                rec.app_id = outcome.app.id
                rec.synced_ms = self.service.clock.now_ms()
                await self.service.store.save_app_url(rec)
        return json_response({"ok": True, "modified": outcome.modified, "app_id": outcome.app.id,
                              "sync_id": outcome.sync_id})

    # ------------------------------------------------------------------ use_api fetches

    async def _run_for_api(self, request: Request) -> Any:
        if not bearer_ok(request, self.config):
            return unauthorized()
        run_id = request.path_params["run_id"]
        if not is_ulid(run_id):
            return public_error(f"invalid run id: {run_id}", 400)
        run = await self.service.state.runs.get(run_id)
        if run is None or not reaches(request, self.service)(run.env_id):
            return public_error(f"runtime state is no longer available for runID: {run_id}", 410)
        return run

    async def run_batch(self, request: Request) -> Response:
        run = await self._run_for_api(request)
        if isinstance(run, Response):
            return run
        return Response(b"[" + b",".join(run.events) + b"]", media_type="application/json")

    async def run_actions(self, request: Request) -> Response:
        run = await self._run_for_api(request)
        if isinstance(run, Response):
            return run
        parts = [jcs.dumps(k) + b":" + v for k, v in run.steps.items()]
        return Response(b"{" + b",".join(parts) + b"}", media_type="application/json")

    # ------------------------------------------------------------------- checkpointing

    async def checkpoint_async(self, request: Request) -> Response:
        """JS v4 "async checkpointing": step results reported while the request goes on."""
        return await self.checkpoint(request, await request.body()) or Response(status_code=200)

    async def checkpoint(self, request: Request, raw_body: bytes) -> Response | None:
        """Store the steps a checkpoint reports; None when they are stored (200, no body), else
        the error to answer. One per step of a checkpointing SDK: kept to what it needs (the
        ASGI app in ``api/app.py`` calls it without the router, and answers None itself)."""
        if not bearer_ok(request, self.config):
            return unauthorized()
        run_id = request.path_params["run_id"]
        try:
            body = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            return public_error(f"Invalid request: {exc}", 400)
        steps = body.get("steps") if isinstance(body, dict) else None
        if not isinstance(steps, list):
            return public_error("Invalid request: expected an object with a 'steps' array", 400)
        ops = []
        for raw in steps:
            try:
                opcode = parse_opcode(raw.get("op") if isinstance(raw, dict) else None)
            except ValueError as exc:
                return public_error(str(exc), 400)
            if opcode not in _CHECKPOINT_OPS:
                return public_error(f"opcode {opcode.value} cannot be checkpointed", 400)
            ops.append((opcode, raw))
        cluster = self.service.cluster
        if cluster is not None and not cluster.holds_locally(run_id):
            # the run's dispatch and state live in the process that owns its shard
            return await forward(cluster, request, run_id)
        x = self.service.executor
        generation = body.get("generation_id")
        if isinstance(generation, str) and generation.isdigit():
            generation = int(generation)
        if not x.dispatch_is_live(run_id, generation if isinstance(generation, int) and generation else None):
            if cluster is not None and not await cluster.holds_shard_of(run_id):
                # our view of the shard was stale (taken over a moment ago): its owner decides
                return await forward(cluster, request, run_id)
            return public_error(
                f"stale dispatch: request generation {generation} of run {run_id} is no longer in flight", 409,
            )
        async with x.state.runs.lock(run_id):
            run = await x.state.runs.get(run_id)
            if run is None or not reaches(request, self.service)(run.env_id):
                return public_error(f"run {run_id} not found", 404)
            if run.ended:
                return public_error(f"run {run_id} has already ended", 400)
            batch = Batch()
            x.starts.take(run_id, batch)  # a run's first checkpoint records its start too
            now = self.service.clock.now_ms()
            for opcode, raw in ops:
                if opcode is Opcode.STEP_RUN:
                    value = jcs.dumps({"data": raw.get("data")})
                elif opcode is Opcode.STEP:
                    value = jcs.dumps(raw.get("data"))
                else:
                    continue
                step_id = str(raw.get("id") or "")
                if x.save_step(run, step_id, value, batch) is not None:
                    start, end = _timing(raw.get("timing"), now)
                    batch.add(AddHistory(run.id, now, "StepCompleted", step_id=step_id, name=step_name(raw),
                                         data=b'{"started_ms":%d,"ended_ms":%d,"checkpoint":true}' % (start, end)))
            if batch:
                await x.state.commit_run(run_id, batch)
        return None

    # ---------------------------------------------------------------------------- signals

    async def signal(self, request: Request) -> Response:
        if not bearer_ok(request, self.config):
            return unauthorized()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return api_error(f"the body must be JSON: {exc}", 400)
        if not isinstance(body, dict) or not isinstance(body.get("signal"), str) or not body["signal"]:
            return api_error("the body must be {\"signal\": \"<name>\", \"data\": <any>}", 400)
        name = body["signal"]
        if nested_deeper_than(body.get("data"), MAX_EVENT_DEPTH):
            return api_error(f"the signal's data nests JSON objects and arrays more than {MAX_EVENT_DEPTH} levels deep", 400)
        value = jcs.dumps({"data": {"signal": name, "data": body.get("data")}})
        run_id = await self.service.executor.control.signal(name, value, reaches(request, self.service))
        if run_id is None:
            return api_error(f"no run is waiting for signal {name!r}", 404)
        return json_response({"data": {"run_id": run_id}, "metadata": _metadata(self.service)})


def _timing(timing: Any, now_ms: int) -> tuple[int, int]:
    """When a checkpointed step started and ended (ms), from its ``timing`` (``a``: start, ``b``:
    duration, in ns); now and no duration for what is missing or not a number."""
    start, took = now_ms, 0
    if isinstance(timing, dict):
        a, b = timing.get("a"), timing.get("b")
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            start = int(a) // 1_000_000
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            took = int(b) // 1_000_000
    return start, start + took


def _metadata(service: Service) -> dict[str, Any]:
    from pyngest.protocol.durations import iso_ms

    return {"fetched_at": iso_ms(service.clock.now_ms()), "cached_until": None}
