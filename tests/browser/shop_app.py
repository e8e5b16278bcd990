"""A real app for the browser tests: the official Inngest Python SDK served with FastAPI.

Run as ``uvicorn tests.browser.shop_app:app`` with ``PYNGEST_URL`` pointing at the server.
Its functions cover what the dashboard draws: steps, a retried step, a sleep, a wait for an
event, an invoke, a failure, and a cron trigger. A second app, ``billing``, is served by the same
process at ``/api/billing``, so the dashboard has runs across apps to tell apart.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import fastapi
import inngest
import inngest.fast_api

BASE = os.environ.get("PYNGEST_URL", "http://127.0.0.1:8288")
client = inngest.Inngest(
    app_id="shop", is_production=False, api_base_url=BASE, event_api_base_url=BASE,
)
_attempts: dict[str, int] = {}


@client.create_function(fn_id="process-order", name="Process order",
                        trigger=inngest.TriggerEvent(event="shop/order.created"), retries=2)
async def process_order(ctx: inngest.Context) -> dict[str, Any]:
    order = ctx.event.data.get("orderId", "?")
    await ctx.step.run("reserve-stock", lambda: {"reserved": True, "order": order})

    def charge() -> dict[str, Any]:
        key = f"{ctx.run_id}"
        _attempts[key] = _attempts.get(key, 0) + 1
        if ctx.event.data.get("flaky") and _attempts[key] == 1:
            raise RuntimeError("card network timed out")
        return {"charged": ctx.event.data.get("amount", 0)}

    await ctx.step.run("charge-card", charge)
    await ctx.step.sleep("cool-off", datetime.timedelta(milliseconds=400))
    await ctx.step.invoke("send-receipt", function=send_receipt, data={"orderId": order})
    return {"ok": True, "order": order}


@client.create_function(fn_id="send-receipt", name="Send receipt",
                        trigger=inngest.TriggerEvent(event="shop/receipt.requested"))
async def send_receipt(ctx: inngest.Context) -> dict[str, Any]:
    return await ctx.step.run("email", lambda: {"sent": True, "to": ctx.event.data.get("orderId")})


@client.create_function(fn_id="await-approval", name="Await approval",
                        trigger=inngest.TriggerEvent(event="shop/refund.requested"))
async def await_approval(ctx: inngest.Context) -> dict[str, Any]:
    approved = await ctx.step.wait_for_event(
        "approval", event="shop/refund.approved", if_exp="event.data.refundId == async.data.refundId",
        timeout=datetime.timedelta(minutes=30),
    )
    return {"approved": approved is not None}


@client.create_function(fn_id="sync-inventory", name="Sync inventory",
                        trigger=inngest.TriggerEvent(event="shop/inventory.sync"), retries=0)
async def sync_inventory(ctx: inngest.Context) -> None:
    await ctx.step.run("fetch-feed", lambda: {"items": 3})
    raise ValueError("the supplier feed is malformed")


@client.create_function(fn_id="nightly-report", name="Nightly report", trigger=inngest.TriggerCron(cron="0 3 * * *"))
async def nightly_report(ctx: inngest.Context) -> str:
    return "done"


billing = inngest.Inngest(
    app_id="billing", is_production=False, api_base_url=BASE, event_api_base_url=BASE,
)


@billing.create_function(fn_id="issue-invoice", name="Issue invoice",
                         trigger=inngest.TriggerEvent(event="billing/invoice.requested"))
async def issue_invoice(ctx: inngest.Context) -> dict[str, Any]:
    return await ctx.step.run("render-pdf", lambda: {"pages": 1, "order": ctx.event.data.get("orderId")})


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [process_order, send_receipt, await_approval, sync_inventory, nightly_report])
inngest.fast_api.serve(app, billing, [issue_invoice], serve_path="/api/billing")
