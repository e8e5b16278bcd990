"""pyngest's GraphQL schema takes every argument upstream's declares on the fields pyngest serves.

``UPSTREAM_ARGUMENTS`` lists the arguments of upstream's dev-server schema
(``pkg/coreapi/gql.*.graphql``, as its dev-server UI's generated types show them): field ->
argument -> type. A client written against upstream (the npm SDK's test helpers poll
``run(runID){ trace(preview: true){...} }``) must not meet "Unknown argument".
"""

from __future__ import annotations

from graphql import GraphQLSchema

from pyngest.server.api.graphql.resolvers import load_schema

UPSTREAM_ARGUMENTS: dict[str, dict[str, str]] = {
    "Query.app": {"id": "UUID!"},
    "Query.apps": {"filter": "AppsFilterV1"},
    "Query.event": {"query": "EventQuery!"},
    "Query.eventV2": {"id": "ULID!"},
    "Query.events": {"query": "EventsQuery!"},
    "Query.eventsV2": {"after": "String", "filter": "EventsFilter!", "first": "Int!"},
    "Query.functionBySlug": {"query": "FunctionQuery!"},
    "Query.functionRun": {"query": "FunctionRunQuery!"},
    "Query.run": {"runID": "String!"},
    "Query.runTrace": {"runID": "String!"},
    "Query.runTraceSpanOutputByID": {"outputID": "String!"},
    "Query.runTrigger": {"runID": "String!"},
    "Query.runs": {
        "after": "String", "filter": "RunsFilterV2!", "first": "Int!",
        "orderBy": "[RunsV2OrderBy!]!", "preview": "Boolean",
    },
    "Query.stream": {"query": "StreamQuery!"},
    "Query.workerConnection": {"connectionId": "ULID!"},
    "Query.workerConnections": {
        "after": "String", "filter": "ConnectV1WorkerConnectionsFilter!", "first": "Int!",
        "orderBy": "[ConnectV1WorkerConnectionsOrderBy!]!",
    },
    "Query.debugRun": {"query": "DebugRunQuery!"},
    "Query.debugSession": {"query": "DebugSessionQuery!"},
    "Mutation.cancelRun": {"runID": "ULID!"},
    "Mutation.createApp": {"input": "CreateAppInput!"},
    "Mutation.createDebugSession": {"input": "CreateDebugSessionInput!"},
    "Mutation.deleteApp": {"id": "String!"},
    "Mutation.deleteAppByName": {"name": "String!"},
    "Mutation.invokeFunction": {
        "data": "Map", "debugRunID": "ULID", "debugSessionID": "ULID", "functionSlug": "String!",
        "user": "Map",
    },
    "Mutation.rerun": {
        "debugRunID": "ULID", "debugSessionID": "ULID", "fromStep": "RerunFromStepInput",
        "runID": "ULID!",
    },
    "Mutation.updateApp": {"input": "UpdateAppInput!"},
    "FunctionRun.historyItemOutput": {"id": "ULID!"},
    "FunctionRunV2.trace": {"preview": "Boolean"},
    "RunsV2Connection.totalCount": {"preview": "Boolean"},
}


def served_arguments(schema: GraphQLSchema) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for type_name, gql_type in schema.type_map.items():
        fields = getattr(gql_type, "fields", None)
        if type_name.startswith("__") or not isinstance(fields, dict):
            continue
        for field_name, field in fields.items():
            args = getattr(field, "args", None)
            if args is not None:
                out[f"{type_name}.{field_name}"] = {name: str(arg.type) for name, arg in args.items()}
    return out


def test_every_upstream_argument_of_a_served_field_is_accepted_with_its_type() -> None:
    ours = served_arguments(load_schema())
    missing = {
        field: {arg: kind for arg, kind in args.items() if ours[field].get(arg) != kind}
        for field, args in UPSTREAM_ARGUMENTS.items()
        if field in ours
    }
    assert {field: args for field, args in missing.items() if args} == {}


def test_the_fields_upstream_clients_poll_are_served() -> None:
    ours = served_arguments(load_schema())
    for field in ("Query.run", "Query.runs", "Query.runTraceSpanOutputByID", "FunctionRunV2.trace",
                  "RunsV2Connection.totalCount", "Mutation.invokeFunction", "Mutation.rerun"):
        assert field in ours, field
