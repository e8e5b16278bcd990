"""What both stores must show after upgrading a database made before environments (one app,
function, event and run, written by the test in the old schema)."""

from __future__ import annotations

import pytest

from pyngest.server.model import DEFAULT_ENV
from pyngest.server.store.base import AppRecord, FunctionRecord, RunQuery, Store


async def check_upgraded(store: Store, duplicate_error: type[BaseException], now_ms: int) -> None:
    """Every old row is the default environment's; names are unique per environment only."""
    assert [a.env_id for a in await store.list_apps()] == [DEFAULT_ENV]
    assert [f.env_id for f in await store.list_functions()] == [DEFAULT_ENV]
    assert [e.env_id for e in await store.list_events(None, 10)] == [DEFAULT_ENV]
    assert [r.env_id for r in await store.list_runs(RunQuery(env_id=DEFAULT_ENV))] == [DEFAULT_ENV]
    assert await store.list_runs(RunQuery(env_id="other")) == []
    assert [e.id for e in await store.list_envs()] == [DEFAULT_ENV]
    # the same app name and function slug in another environment
    await store.save_app(AppRecord("a2", "shop", "", env_id="other"))
    await store.save_functions("a2", [FunctionRecord("f2", "a2", "shop-order", "order", {}, env_id="other")], now_ms)
    assert sorted(f.env_id for f in await store.list_functions()) == sorted([DEFAULT_ENV, "other"])
    with pytest.raises(duplicate_error):  # but not twice in one environment
        await store.save_app(AppRecord("a3", "shop", ""))
