"""The webhook routes' part of the OpenAPI document (api/webhooks.py)."""

from __future__ import annotations

from typing import Any

_ID = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


WEBHOOK_SCHEMAS: dict[str, Any] = {
    "Webhook": {"type": "object", "required": ["id", "name", "url", "key"], "properties": {
        "id": _ID, "name": {"type": "string"}, "url": {"type": "string"}, "key": {"type": "string"},
        "environment_id": _ID, "transform": {"type": ["string", "null"]}, "created_at": _TIME,
        "updated_at": _TIME}},
    "WebhookFailure": {"type": "object", "required": ["id", "webhook_id", "error", "body"], "properties": {
        "id": _ID, "webhook_id": _ID, "received_at": _TIME, "error": {"type": "string"}, "body": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}}, "query": {"type": "string"},
        "replayed_at": _NULLABLE_TIME, "event_ids": {"type": ["array", "null"], "items": _ID}}},
}

_INPUT = {"type": "object", "properties": {
    "name": {"type": "string"}, "transform": {"type": ["string", "null"]}}}
_TEST = {"type": "object", "properties": {
    "transform": {"type": ["string", "null"]}, "payload": {}, "headers": {"type": "object"},
    "query": {"type": "string"}}}

# (method, path, tag, summary, request body schema or None, response data schema, query params)
WEBHOOK_ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, Any], list[str]]] = [
    ("get", "/v1/webhooks", "Webhooks", "List webhooks", None, {"type": "array", "items": _ref("Webhook")}, []),
    ("post", "/v1/webhooks", "Webhooks", "Create a webhook (a transform of null: the default)", _INPUT,
     _ref("Webhook"), []),
    ("get", "/v1/webhooks/{webhook_id}", "Webhooks", "Get a webhook", None, _ref("Webhook"), []),
    ("put", "/v1/webhooks/{webhook_id}", "Webhooks", "Change a webhook's name or transform", _INPUT,
     _ref("Webhook"), []),
    ("patch", "/v1/webhooks/{webhook_id}", "Webhooks", "Change a webhook's name or transform", _INPUT,
     _ref("Webhook"), []),
    ("delete", "/v1/webhooks/{webhook_id}", "Webhooks", "Delete a webhook and its failed requests", None,
     {"type": "object", "properties": {"id": _ID, "deleted": {"type": "boolean"}}}, []),
    ("post", "/v1/webhooks/test", "Webhooks", "Run a transform on a sample request, storing nothing", _TEST,
     {"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object"}},
                                       "error": {"type": ["string", "null"]}}}, []),
    ("get", "/v1/webhooks/{webhook_id}/failures", "Webhooks",
     "Requests the webhook could not turn into events, newest first", None,
     {"type": "array", "items": _ref("WebhookFailure")}, ["before", "limit"]),
    ("post", "/v1/webhooks/failures/{failure_id}/replay", "Webhooks",
     "Run the webhook's current transform on a failed request again", None,
     {"type": "object", "properties": {"ids": {"type": "array", "items": _ID}, "status": {"type": "integer"},
                                       "failure_id": _ID}}, []),
]
