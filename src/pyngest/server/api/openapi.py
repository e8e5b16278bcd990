"""``GET /openapi.json``: the OpenAPI 3.1 document of the REST API (``/v1``) and the other
management endpoints. Tests check it against the router both ways, so it cannot drift."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pyngest.server.api.common import json_response
from pyngest.server.api.openapi_webhooks import WEBHOOK_ROUTES, WEBHOOK_SCHEMAS

_ID = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_META = {"type": "object", "properties": {"fetched_at": _TIME, "cached_until": {"type": ["string", "null"]}}}
_STATUS = {"type": "string", "enum": ["Queued", "Running", "Completed", "Failed", "Cancelled", "Skipped"]}
_OP_STATUS = {"type": "string", "enum": ["running", "completed", "stopped"]}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
    "Run": {"type": "object", "required": ["run_id", "function_id", "status"], "properties": {
        "run_id": _ID, "run_started_at": {"type": ["string", "null"], "format": "date-time"}, "function_id": _ID,
        "function_slug": {"type": ["string", "null"]}, "function_version": {"type": "integer"}, "environment_id": _ID,
        "event_id": {"type": ["string", "null"]}, "status": _STATUS, "queued_at": _TIME,
        "ended_at": {"type": ["string", "null"], "format": "date-time"}, "output": {},
        "batch_id": _ID, "original_run_id": _ID, "cron": {"type": "string"}}},
    "Event": {"type": "object", "required": ["name", "internal_id"], "properties": {
        "name": {"type": "string"}, "id": _ID, "data": {"type": "object"}, "user": {"type": "object"},
        "ts": {"type": "integer"}, "v": {"type": "string"}, "internal_id": _ID, "received_at": _TIME}},
    "App": {"type": "object", "required": ["id", "name", "url"], "properties": {
        "id": _ID, "name": {"type": "string"}, "url": {"type": "string"}, "sdk_language": {"type": "string"},
        "sdk_version": {"type": "string"}, "framework": {"type": ["string", "null"]},
        "app_version": {"type": ["string", "null"]}, "error": {"type": ["string", "null"]},
        "function_count": {"type": "integer"}, "updated_at": {"type": ["string", "null"]},
        "sync_error": {"type": ["string", "null"]}}},
    "Function": {"type": "object", "required": ["id", "slug", "name"], "properties": {
        "id": _ID, "slug": {"type": "string"}, "name": {"type": "string"}, "app_id": _ID,
        "paused": {"type": "boolean"}, "config": {"type": "object"}}},
    "Cancellation": {"type": "object", "required": ["id", "function_id", "status"], "properties": {
        "id": _ID, "environment_id": _ID, "name": {"type": "string"}, "function_id": {"type": "string"},
        "app_id": _ID, "started_after": {"type": ["string", "null"]}, "started_before": {"type": ["string", "null"]},
        "if": {"type": ["string", "null"]}, "matched": {"type": "integer"}, "cancelled": {"type": "integer"},
        "status": _OP_STATUS, "created_at": _TIME, "finished_at": {"type": ["string", "null"]}}},
    "Replay": {"type": "object", "required": ["id", "function_id", "status"], "properties": {
        "id": _ID, "name": {"type": "string"}, "function_id": {"type": "string"}, "app_id": _ID, "from": _TIME,
        "until": _TIME, "statuses": {"type": "array", "items": _STATUS}, "total": {"type": "integer"},
        "scheduled": {"type": "integer"}, "status": _OP_STATUS, "created_at": _TIME,
        "finished_at": {"type": ["string", "null"]}}},
    "Environment": {"type": "object", "required": ["id", "name", "type"], "properties": {
        "id": _ID, "name": {"type": "string"}, "type": {"type": "string", "enum": ["production", "custom", "branch"]},
        "parent_id": {"type": ["string", "null"]}, "archived": {"type": "boolean"},
        "archived_at": {"type": ["string", "null"]}, "created_at": _TIME,
        "auto_archive": {"type": "boolean", "description": "a branch: archived 3 days after its latest deploy"},
        "auto_archive_at": {"type": ["string", "null"], "description": "when, unless deployed again"},
        "deployed_at": {"type": ["string", "null"], "description": "a branch's latest deploy (sync)"},
        "signing_key": {"type": "string", "description": "only when created"}}},
    "EventKey": {"type": "object", "required": ["id", "name", "hint"], "properties": {
        "id": _ID, "environment_id": _ID, "name": {"type": "string"}, "hint": {"type": "string"},
        "key": {"type": "string", "description": "only when created or rotated: only its hash is kept"},
        "filter": {"type": ["object", "null"], "description": "{events: {mode: allow|deny, names: [...]}, "
                                                              "ips: {mode: allow|deny, ranges: [CIDR...]}}"},
        "created_at": _TIME}},
    "SigningKey": {"type": "object", "required": ["id", "state", "key"], "properties": {
        "id": _ID, "environment_id": _ID, "state": {"type": "string", "enum": ["active", "next", "previous"]},
        "key": {"type": "string"}, "created_at": _TIME}},
    **WEBHOOK_SCHEMAS,
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": data, "metadata": _META}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


# (method, path, tag, summary, request body schema or None, response data schema, query params)
ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, Any], list[str]]] = [
    ("get", "/v1/events", "Events", "List events, newest first", None,
     {"type": "array", "items": _ref("Event")}, ["name", "limit", "cursor"]),
    ("post", "/v1/events", "Events", "Send events (as the Event API, without an event key)",
     {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
     _obj(ids={"type": "array", "items": _ID}), []),
    ("get", "/v1/events/{event_id}", "Events", "Get an event", None, _ref("Event"), []),
    ("get", "/v1/events/{event_id}/runs", "Events", "The runs an event triggered", None,
     {"type": "array", "items": _ref("Run")}, []),
    ("get", "/v1/events/{event_id}/skips", "Events",
     "Functions the event matched but did not start, and why (rate_limited, singleton, function_paused)", None,
     {"type": "array", "items": _obj(function_id=_ID, function_slug={"type": ["string", "null"]},
                                     reason={"type": "string"}, skipped_at=_TIME)}, []),
    ("get", "/v1/runs", "Runs", "List runs, newest first", None, {"type": "array", "items": _ref("Run")},
     ["function_id", "status", "limit", "cursor"]),
    ("get", "/v1/runs/{run_id}", "Runs", "Get a run", None, _ref("Run"), []),
    ("delete", "/v1/runs/{run_id}", "Runs", "Cancel a run", None, _ref("Run"), []),
    ("post", "/v1/runs/{run_id}/cancel", "Runs", "Cancel a run", None, _ref("Run"), []),
    ("post", "/v1/runs/{run_id}/rerun", "Runs", "Start a new run with the same events", None,
     _obj(run_id=_ID), []),
    ("get", "/v1/apps", "Apps", "List apps", None, {"type": "array", "items": _ref("App")}, []),
    ("post", "/v1/apps", "Apps", "Add an app URL and sync it", _obj(url={"type": "string"}),
     _obj(url={"type": "string"}, error={"type": ["string", "null"]}, app_id={"type": ["string", "null"]}), []),
    ("patch", "/v1/apps/{app_id}", "Apps", "Change an app's URL and resync", _obj(url={"type": "string"}),
     _ref("App"), []),
    ("delete", "/v1/apps/{app_id}", "Apps", "Remove an app and its URL", None,
     _obj(id=_ID, deleted={"type": "boolean"}), []),
    ("post", "/v1/apps/{app_id}/sync", "Apps", "Resync an app", None, _ref("App"), []),
    ("get", "/v1/apps/{app_name}/functions", "Apps", "An app's functions", None,
     {"type": "array", "items": _ref("Function")}, []),
    ("get", "/v1/functions", "Functions", "List functions", None, {"type": "array", "items": _ref("Function")}, []),
    ("post", "/v1/functions/{function_id}/pause", "Functions",
     "Pause a function: its events are kept but start no run (recorded as skipped); its running runs "
     "wait between steps and are cancelled after 7 days (now, with cancel_running)",
     _obj(cancel_running={"type": "boolean"}),
     _obj(id=_ID, slug={"type": "string"}, paused={"type": "boolean"},
          cancellation={"oneOf": [_ref("Cancellation"), {"type": "null"}]}), []),
    ("post", "/v1/functions/{function_id}/resume", "Functions", "Resume a paused function", None,
     _obj(id=_ID, slug={"type": "string"}, paused={"type": "boolean"}), []),
    ("post", "/v1/functions/{function_id}/invoke", "Functions", "Invoke a function with a payload",
     _obj(data={"type": "object"}, user={"type": "object"}), _obj(event_id=_ID), []),
    ("post", "/v1/cancellations", "Cancellations", "Cancel a function's unfinished runs in a time range",
     {"type": "object", "required": ["function_id"], "properties": {
         "app_id": _ID, "function_id": _ID, "name": {"type": "string"}, "started_after": _TIME,
         "started_before": _TIME, "if": {"type": "string"}}},
     _ref("Cancellation"), []),
    ("get", "/v1/cancellations", "Cancellations", "Bulk cancellations, newest first", None,
     {"type": "array", "items": _ref("Cancellation")}, ["function_id", "app_id"]),
    ("get", "/v1/cancellations/{op_id}", "Cancellations", "A bulk cancellation and its progress", None,
     _ref("Cancellation"), []),
    ("delete", "/v1/cancellations/{op_id}", "Cancellations", "Stop a bulk cancellation", None,
     _ref("Cancellation"), []),
    ("post", "/v1/replays", "Replays", "Replay a function's runs with the given statuses in a time range",
     {"type": "object", "required": ["function_id", "from", "statuses"], "properties": {
         "function_id": _ID, "name": {"type": "string"}, "from": _TIME, "until": _TIME,
         "statuses": {"type": "array", "items": _STATUS}}},
     _ref("Replay"), []),
    ("get", "/v1/replays", "Replays", "Replays, newest first", None, {"type": "array", "items": _ref("Replay")},
     ["function_id", "app_id"]),
    ("get", "/v1/replays/{op_id}", "Replays", "A replay and its progress", None, _ref("Replay"), []),
    ("delete", "/v1/replays/{op_id}", "Replays", "Stop a replay", None, _ref("Replay"), []),
    ("get", "/v1/envs", "Environments", "Environments (a signing key sees its own and its branches)", None,
     {"type": "array", "items": _ref("Environment")}, []),
    ("post", "/v1/envs", "Environments", "Create a custom environment and its first signing key",
     _obj(name={"type": "string"}), _ref("Environment"), []),
    ("patch", "/v1/envs/{env_id}", "Environments",
     "Turn a branch environment's auto-archive (3 days after its latest deploy) off or on",
     {**_obj(auto_archive={"type": "boolean"}), "required": ["auto_archive"], "additionalProperties": False},
     _ref("Environment"), []),
    ("post", "/v1/envs/{env_id}/archive", "Environments", "Archive an environment: its events are refused",
     None, _ref("Environment"), []),
    ("post", "/v1/envs/{env_id}/unarchive", "Environments", "Unarchive an environment", None,
     _ref("Environment"), []),
    ("get", "/v1/keys/event", "Event keys", "The environment's event keys (never the keys themselves)", None,
     {"type": "array", "items": _ref("EventKey")}, []),
    ("post", "/v1/keys/event", "Event keys", "Create an event key, with an optional filter",
     _obj(name={"type": "string"}, filter={"type": ["object", "null"]}), _ref("EventKey"), []),
    ("patch", "/v1/keys/event/{key_id}", "Event keys", "Rename an event key or change its filter",
     _obj(name={"type": "string"}, filter={"type": ["object", "null"]}), _ref("EventKey"), []),
    ("delete", "/v1/keys/event/{key_id}", "Event keys", "Delete an event key", None, _obj(deleted=_ID), []),
    ("post", "/v1/keys/event/{key_id}/rotate", "Event keys",
     "Replace an event key's secret (same name and filter); the old one stops working", None,
     _ref("EventKey"), []),
    ("get", "/v1/keys/signing", "Signing keys", "The environment's signing keys", None,
     {"type": "array", "items": _ref("SigningKey")}, []),
    ("post", "/v1/keys/signing", "Signing keys",
     "Create a new signing key (state next: accepted, not yet signing; the first one is active)", None,
     _ref("SigningKey"), []),
    ("post", "/v1/keys/signing/rotate", "Signing keys",
     "Sign with the new key; the old one stays accepted (previous) until it is deleted", None,
     _ref("SigningKey"), []),
    ("delete", "/v1/keys/signing/{key_id}", "Signing keys", "Retire a signing key that is not active", None,
     _obj(deleted=_ID), []),
    *WEBHOOK_ROUTES,
]
# POSTs that create what they return (201)
_CREATES = {("post", "/v1/envs"), ("post", "/v1/keys/event"), ("post", "/v1/keys/signing")}

def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


# Every route can answer these: a body over the server's limit, no credentials (start mode), the
# database out of reach.
_ALWAYS = {
    "401": _error("Not authenticated"),
    "413": _error("The request body is over the size limit (docs/security.md, \"Limits on input\")"),
    "503": _error("The server's database is unavailable; nothing was done, try again"),
}
_GQL_ERRORS = {"type": "object", "required": ["errors"], "properties": {
    "data": {}, "errors": {"type": "array", "items": {"type": "object", "properties": {"message": {"type": "string"}}}}}}
SCHEMAS["GraphQLErrors"] = _GQL_ERRORS

_IDS = {"type": "object", "required": ["ids", "status"], "properties": {
    "ids": {"type": "array", "items": _ID}, "status": {"type": "integer"}, "error": {"type": "string"}}}
SCHEMAS["EventIds"] = _IDS

OTHER_PATHS: dict[str, Any] = {
    "/e/{key}": {"post": {
        "tags": ["Events"], "summary": "The Event API: send one event or an array of events with an event key",
        "description": "Events are taken in order up to the first invalid one; a 400 lists the ids of those "
                       "stored before it. Limits: docs/security.md. `x-inngest-env` (a header or a query "
                       "parameter) sends to a branch environment, created if new (docs/environments.md).",
        "security": [],
        "parameters": [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": _body({"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}),
        "responses": {
            "200": {"description": "Stored", "content": {"application/json": {"schema": _ref("EventIds")}}},
            "400": _error("An invalid event (the events before it were stored) or not events at all", "EventIds"),
            "401": _error("Event key not found (start mode), or its environment is archived"),
            "403": _error("The event key's filter refuses the sender's address or an event's name; "
                          "nothing was stored", "EventIds"),
            "413": _error("The body is over the request size limit; nothing was stored", "EventIds"),
            "503": _error("Nothing was stored: no event key configured (start mode), or the database is "
                          "unavailable")}}},
    "/v0/gql": {"post": {
        "tags": ["GraphQL"], "summary": "GraphQL (upstream's dev-server schema plus the dashboard's fields)",
        "description": "Queries are limited in length (413), bracket nesting, field depth and field count "
                       "(400); docs/security.md lists the limits.",
        "requestBody": _body(_obj(query={"type": "string"}, variables={"type": "object"},
                                  operationName={"type": "string"})),
        "responses": {
            "200": {"description": "GraphQL result", "content": {"application/json": {
                "schema": _obj(data={}, errors={"type": "array"})}}},
            "400": _error("Not a GraphQL request, or a query over the nesting, depth or field-count limit",
                          "GraphQLErrors"),
            **_ALWAYS,
            "413": _error("The body or the query is over its size limit", "GraphQLErrors")}}},
    "/v0/live": {"get": {
        "tags": ["Live"], "summary": "Server-sent events: which runs and event names of the selected "
                                     "environment (x-inngest-env) just changed",
        "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {}}}, **_ALWAYS}}},
    "/metrics": {"get": {
        "tags": ["Observability"], "summary": "Prometheus metrics of the selected environment (x-inngest-env)",
        "responses": {"200": {"description": "exposition text", "content": {"text/plain": {}}}, **_ALWAYS}}},
}
# Routes without path parameters that still name something that may not exist (a function).
_NAMES_A_FUNCTION = {("post", "/v1/cancellations"), ("get", "/v1/cancellations"),
                     ("post", "/v1/replays"), ("get", "/v1/replays")}


def document(version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, tag, summary, body, data, query in ROUTES:
        created = (method == "post" and tag in ("Cancellations", "Replays")) or (method, path) in _CREATES
        # the cancellation guide shows the created cancellation as the body itself
        flat = (method, path) == ("post", "/v1/cancellations")
        op: dict[str, Any] = {
            "tags": [tag], "summary": summary, "operationId": f"{method}_{path}",
            "responses": {
                "201" if created else "200": {
                    "description": "OK", "content": {"application/json": {"schema": data if flat else _envelope(data)}}},
                "400": _error("Bad request"),
                **_ALWAYS,
            },
        }
        responses = op["responses"]
        if "{" in path or (method, path) in _NAMES_A_FUNCTION:
            responses["404"] = _error("Not found")
        if tag in ("Environments", "Event keys", "Signing keys"):
            responses["409"] = _error("In conflict with the keys' state (the message says what to do first), "
                                      "or the name is taken")
        if tag == "Apps" and method in ("post", "patch"):
            # the app did not answer the sync: the body is the usual one, its error says why
            responses["502"] = {"description": "The app could not be synced (`error`/`sync_error` says why)",
                                "content": {"application/json": {"schema": _envelope(data)}}}
        params = [{"name": p[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in path.split("/") if p.startswith("{")]
        params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}} for q in query]
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = _body(body)
        paths.setdefault(path, {})[method] = op
    paths.update(OTHER_PATHS)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pyngest API", "version": version,
                 "description": "REST API of a pyngest server. In `start` mode send "
                                "`Authorization: Bearer <signing key>` (or use a dashboard session): the key "
                                "selects its environment, and `x-inngest-env` one of its branches "
                                "(docs/environments.md)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "signingKey": {"type": "http", "scheme": "bearer", "description": "the server's signing key"}}},
        "security": [{"signingKey": []}],
    }


class OpenAPI:
    def __init__(self, version: str) -> None:
        self.doc = document(version)

    async def serve(self, request: Request) -> Response:
        return json_response(self.doc)
