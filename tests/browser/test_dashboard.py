"""Every page and action of the dashboard, end to end: a real server, a real app, a real browser."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.browser.conftest import Page, Stack

pytestmark = pytest.mark.browser


def test_runs_appear_live_and_filters_and_search_work(page: Page, stack: Stack) -> None:
    p = page.go("/runs")
    p.wait_for_selector("text=Live updates")
    p.wait_for_selector(".live.on")
    p.wait_for_selector("tbody, .empty")
    # when each row first shows, on the wall clock, polled in the page every 5 ms
    p.evaluate("""() => { window.__rows = {}; setInterval(() => {
        for (const tr of document.querySelectorAll('tr[data-run]'))
          if (!(tr.dataset.run in window.__rows)) window.__rows[tr.dataset.run] = Date.now(); }, 5); }""")
    p.evaluate("() => { window.__same_page = true; }")  # gone if the page reloads
    sent = time.time()
    eid = stack.send("shop/order.created", {"orderId": "o-live", "amount": 12})
    run_id = stack.wait_runs(eid, ended=False)[0]["run_id"]
    p.wait_for_selector(f'tr[data-run="{run_id}"]')
    seen_after = p.evaluate(f"window.__rows['{run_id}']") / 1000 - sent
    # the row's status follows the run without a reload
    p.wait_for_selector(f'tr[data-run="{run_id}"] [data-status="COMPLETED"]', timeout=15000)
    print(f"new run shown {seen_after:.2f}s after the event was sent")
    # pushed by the server (the page re-reads only on its live messages): no reload happened
    assert p.evaluate("() => window.__same_page === true")

    failing = stack.send("shop/inventory.sync")
    stack.wait_runs(failing)
    stack.wait_runs(stack.send("shop/order.created", {"orderId": "o-flaky", "amount": 99, "flaky": True}), timeout=30)
    stack.wait_runs(stack.send("billing/invoice.requested", {"orderId": "o-flaky"}))
    p.click('button.chip:has-text("Failed")')
    p.wait_for_selector('tr [data-status="FAILED"]')
    # the filtered page replaces the list (rows already failed were there before it came)
    p.wait_for_function("document.querySelectorAll('tbody [data-status=\"COMPLETED\"]').length === 0")
    p.click('button.chip:has-text("Failed")')
    p.wait_for_selector('tbody [data-status="COMPLETED"]')

    def functions_listed() -> set[str]:
        return {t.split("\n")[0] for t in p.locator("tbody tr td:nth-child(3)").all_inner_texts()}

    # across apps: the app filter, then the function filter
    assert {"Issue invoice", "Process order"} <= functions_listed()
    p.select_option('select[aria-label="App"]', label="billing")
    p.wait_for_url(re.compile(r"app="))
    p.wait_for_function("[...document.querySelectorAll('tbody tr td:nth-child(3)')].every(td => td.innerText.startsWith('Issue invoice'))")
    assert functions_listed() == {"Issue invoice"}
    p.select_option('select[aria-label="App"]', label="All apps")
    p.select_option('select[aria-label="Function"]', label="Sync inventory")
    p.wait_for_url(re.compile(r"fn="))
    p.wait_for_function("[...document.querySelectorAll('tbody tr td:nth-child(3)')].every(td => td.innerText.startsWith('Sync inventory'))")
    assert functions_listed() == {"Sync inventory"}
    assert p.locator('tbody [data-status="FAILED"]').count() >= 1
    # the time range: every run here is minutes old, so the shortest range still lists them
    p.select_option('select[aria-label="Queued in"]', "15m")
    p.wait_for_url(re.compile(r"range=15m"))
    p.wait_for_selector('tbody [data-status="FAILED"]')
    p.select_option('select[aria-label="Function"]', label="All functions")
    p.wait_for_function("document.querySelectorAll('tbody tr').length >= 4")
    p.select_option('select[aria-label="Queued in"]', "24h")
    p.wait_for_url(re.compile(r"range=24h"))

    # the invoked receipt run carries the order id too: two lines, the second narrows it down
    p.fill('textarea[aria-label="Search runs (CEL)"]', 'event.data.orderId == "o-flaky"\nevent.name == "shop/order.created"')
    p.click('button:has-text("Search")')
    p.wait_for_function("document.querySelectorAll('tbody tr').length === 1")
    assert "q=" in p.url
    page.shot("runs-search")
    p.click('button:has-text("Clear")')
    p.wait_for_function("document.querySelectorAll('tbody tr').length >= 3")
    page.shot("runs")

    # more matches than a page: "Search further back" goes on from the search's cursor
    batch = [{"name": "billing/invoice.requested", "data": {"orderId": f"bulk-{i}"}} for i in range(41)]
    ids = httpx.post(f"{stack.base}/e/test", json=batch).json()["ids"]
    stack.wait_runs(ids[-1])
    p.fill('textarea[aria-label="Search runs (CEL)"]', 'event.name == "billing/invoice.requested"')
    p.click('button:has-text("Search")')
    p.wait_for_function("document.querySelectorAll('tbody tr').length === 40")
    with p.expect_request(lambda r: "/v0/gql" in r.url and '"after"' in (r.post_data or "")) as req:
        p.click('button:has-text("Search further back")')
    assert json.loads(req.value.post_data)["variables"]["after"]
    p.wait_for_function("document.querySelectorAll('tbody tr').length === 42")  # and the earlier invoice


def test_run_page_timeline_output_rerun_and_cancel(page: Page, stack: Stack) -> None:
    eid = stack.send("shop/order.created", {"orderId": "o-timeline", "amount": 7, "flaky": True})
    [run] = stack.wait_runs(eid, timeout=30)
    assert run["status"] == "Completed"
    p = page.go(f"/runs/{run['run_id']}")
    for step in ("reserve-stock", "charge-card", "cool-off", "send-receipt"):
        p.wait_for_selector(f'.tl-row[data-span="{step}"]')
    assert p.locator('.tl-row[data-span="charge-card"] .pill').inner_text() == "2 attempts"
    assert p.locator('.tl-row[data-span="charge-card"] .bar.failed').count() == 1
    assert p.locator('.tl-row[data-span="cool-off"] .bar.sleep').count() == 1
    assert p.locator('.tl-row[data-span="send-receipt"] .bar.invoke').count() == 1
    assert "shop-send-receipt" in p.locator('.tl-row[data-span="send-receipt"] .tl-meta').inner_text()
    # the run's output is shown once: in its panel below, not also in the run's detail
    p.wait_for_selector(".two .panel .code")
    assert p.locator(".span-detail .code").count() == 0
    assert p.locator(".two .panel").nth(0).locator(".code").count() == 1
    panel = p.locator(".timeline").bounding_box()
    for meta in p.locator(".timeline .tl-meta").all():  # every label stays inside the timeline
        box = meta.bounding_box()
        assert panel["x"] <= box["x"] and box["x"] + box["width"] <= panel["x"] + panel["width"], meta.inner_text()
    # bars are drawn to scale: the 400 ms sleep is wider than the instant first step
    widths = {s: p.locator(f'.tl-row[data-span="{s}"] .tl-track .bar').first.bounding_box()["width"]
              for s in ("reserve-stock", "cool-off")}
    assert widths["cool-off"] > widths["reserve-stock"]
    p.click('.tl-row[data-span="charge-card"] .caret')
    p.wait_for_selector('.tl-row[data-span="Attempt 1"]')
    p.click('.tl-row[data-span="Attempt 1"]')
    p.wait_for_selector(".span-detail .error-box:has-text('card network timed out')")
    p.click('.tl-row[data-span="reserve-stock"]')
    p.wait_for_selector(".span-detail pre:has-text('reserved')")
    assert '"order": "o-timeline"' in p.locator(".span-detail pre").inner_text()
    p.wait_for_selector("text=Triggering event")
    assert "o-timeline" in p.locator(".two .panel").nth(1).inner_text()
    page.shot("run")

    p.click("button:has-text('Rerun')")
    p.wait_for_url(re.compile(r"/runs/(?!" + run["run_id"] + ")"))
    rerun = p.url.rsplit("/", 1)[1]
    p.wait_for_selector(f".crumbs .mono:has-text('{rerun}')")  # the new run's page, not the old one's
    p.wait_for_selector('h1 [data-status="COMPLETED"]', timeout=30000)
    assert "o-timeline" in p.locator(".two .panel").nth(1).inner_text()

    waiting, p = open_waiting_refund(page, stack, "r-cancel")
    page.shot("run-waiting")
    p.click("button:has-text('Cancel run')")
    p.wait_for_selector('h1 [data-status="CANCELLED"]')
    assert stack.runs(waiting)[0]["status"] == "Cancelled"

    # step progress shows live on the run page: the approval arrives, the wait ends, the run ends
    open_waiting_refund(page, stack, "r-live")
    page.watch('.tl-row[data-span="approval"] .bar.wait.completed')
    page.watch('h1 [data-status="COMPLETED"]')
    page.page.evaluate("() => { window.__same_page = true; }")
    sent = time.time()
    stack.send("shop/refund.approved", {"refundId": "r-live"})
    step_after = page.seen_after('.tl-row[data-span="approval"] .bar.wait.completed', sent)
    ended_after = page.seen_after('h1 [data-status="COMPLETED"]', sent)
    print(f"wait step shown done {step_after:.2f}s, run {ended_after:.2f}s after the event was sent")
    assert page.page.evaluate("() => window.__same_page === true"), "shown live, without a reload"


def open_waiting_refund(page: Page, stack: Stack, refund_id: str) -> tuple[str, Any]:
    """Start a refund that waits for its approval and open its run page; (event id, page)."""
    event_id = stack.send("shop/refund.requested", {"refundId": refund_id})
    [held] = stack.wait_runs(event_id, ended=False)
    p = page.go(f"/runs/{held['run_id']}")
    p.wait_for_selector('.tl-row[data-span="approval"] .bar.wait.waiting')
    return event_id, p


def test_failed_run_shows_its_error(page: Page, stack: Stack) -> None:
    [run] = stack.wait_runs(stack.send("shop/inventory.sync"))
    p = page.go(f"/runs/{run['run_id']}")
    p.wait_for_selector(".error-box:has-text('the supplier feed is malformed')")


def test_functions_list_invoke_and_function_page_actions(page: Page, stack: Stack) -> None:
    stack.wait_runs(stack.send("shop/order.created", {"orderId": "o-fn", "amount": 3}))
    stack.wait_runs(stack.send("shop/inventory.sync"))  # always fails
    p = page.go("/functions")
    row = p.locator('tr[data-function="shop-process-order"]')
    row.wait_for()
    assert "shop/order.created" in row.inner_text()
    assert "0 3 * * *" in p.locator('tr[data-function="shop-nightly-report"]').inner_text()
    assert "100.0%" in p.locator('tr[data-function="shop-sync-inventory"]').inner_text()
    assert int(row.locator(".vol b").inner_text()) >= 1  # volume over the range
    assert "billing/invoice.requested" in p.locator('tr[data-function="billing-issue-invoice"]').inner_text()
    page.shot("functions")
    row.locator("button:has-text('Invoke')").click()
    p.fill('textarea[aria-label="JSON payload"]', '{"data": {"orderId": "o-invoked", "amount": 1}}')
    p.click("button:has-text('Invoke function')")
    p.wait_for_selector(".toast:has-text('Invoked Process order')")
    # the invocation ran with the payload
    p = page.go("/runs?q=" + quote('event.data.orderId == "o-invoked"'))
    p.wait_for_selector('tbody [data-status="COMPLETED"]', timeout=30000)

    p = page.go("/functions/shop-process-order")
    p.wait_for_selector("svg[aria-label='Run status breakdown']")
    for chart in ("Runs throughput", "Steps throughput", "Backlog"):
        p.wait_for_selector(f"svg[aria-label='{chart}'] rect, svg[aria-label='{chart}'] path", state="attached")
    p.wait_for_selector("td:has-text('shop/order.created')")
    # y axes: four equal whole-number steps, for any maximum, and on the charts drawn here
    assert p.evaluate("""async () => { const { niceMax } = await import('/static/charts.js'); const bad = [];
        for (let v = 0; v <= 5000; v++) { const m = niceMax(v); if (m < v || m % 4 || m > 2 * v + 8) bad.push([v, m]); }
        return bad.slice(0, 5); }""") == []
    for chart in ("Runs throughput", "Steps throughput", "Backlog"):
        ticks = [int(t) for t in p.locator(f"svg[aria-label='{chart}'] .axes text").all_text_contents()[:5]]
        assert ticks[-1] == 0 and len({a - b for a, b in zip(ticks, ticks[1:], strict=False)}) == 1, (chart, ticks)
    page.shot("function")
    p.click("button[role=tab]:has-text('Configuration')")
    config = json.loads(p.locator(".code pre").inner_text())
    assert config["id"] == "shop-process-order" and config["triggers"] == [{"event": "shop/order.created"}]
    p.click("button[role=tab]:has-text('Recent runs')")
    # a chosen time range: the charts are read again over it, and still hold the recent runs
    before = time.time()
    with p.expect_request(lambda r: "/v0/gql" in r.url and "functionMetrics" in (r.post_data or "")) as req:
        p.select_option(".page-head select[aria-label='Time range']", "1h")
    after = time.time()
    since = json.loads(req.value.post_data)["variables"]["from"]
    start = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    # one hour before the moment of choosing (the page's clock read between before and after)
    assert before - 3600 - 1 <= start <= after - 3600 + 1, since
    p.wait_for_url(re.compile(r"range=1h"))
    p.wait_for_selector("svg[aria-label='Runs throughput'] rect[fill]")

    # pause: events no longer start the function; resume
    p.click("button:has-text('Pause')")
    p.click(".modal button:has-text('Pause function')")
    p.wait_for_selector("h1 .pill:has-text('Paused')")
    skipped = stack.send("shop/order.created", {"orderId": "o-paused"})
    time.sleep(0.5)
    assert stack.runs(skipped) == []
    # the event's occurrence is marked skipped, and its page says why
    p = page.go("/events/type/shop%2Forder.created")
    p.wait_for_selector(f'tr[data-event="{skipped}"] [data-status="SKIPPED"]')
    assert "shop-process-order" in p.locator(f'tr[data-event="{skipped}"]').inner_text()
    p.click(f'tr[data-event="{skipped}"]')
    p.wait_for_selector(".run-line:has-text('the function was paused')")
    p = page.go("/functions/shop-process-order")
    p.click("button:has-text('Resume')")
    p.wait_for_selector("h1 .pill:has-text('Paused')", state="detached")

    # bulk cancel the refunds waiting for approval
    waiting = [stack.send("shop/refund.requested", {"refundId": f"r{i}"}) for i in range(3)]
    for eid in waiting:
        stack.wait_runs(eid, ended=False)
    p = page.go("/functions/shop-await-approval")
    p.click("button:has-text('Bulk cancel')")
    p.wait_for_selector(".estimate b")
    assert int(p.locator(".estimate b").inner_text()) >= 3
    page.shot("bulk-cancel")
    p.fill(".modal input[placeholder^='e.g. Stop']", "refund storm")
    p.click(".modal-foot button.danger")
    p.wait_for_selector("td:has-text('refund storm')")
    p.wait_for_selector("tr:has-text('refund storm') .pill:has-text('Completed')")
    for eid in waiting:
        assert stack.runs(eid)[0]["status"] == "Cancelled"

    # pause, holding the runs under way: the approval arrives, the run goes on only on resume
    held_event = pause_with_a_run_waiting(p, stack, "r-hold", "Hold them between steps")
    stack.send("shop/refund.approved", {"refundId": "r-hold"})
    time.sleep(1.0)
    assert stack.runs(held_event)[0]["status"] == "Running"
    p.click("button:has-text('Resume')")
    p.wait_for_selector("h1 .pill:has-text('Paused')", state="detached")
    assert [r["status"] for r in stack.wait_runs(held_event)] == ["Completed"]

    # pause, cancelling the runs under way
    held_event = pause_with_a_run_waiting(p, stack, "r-pause", "Cancel them now")
    deadline = time.monotonic() + 10
    while stack.runs(held_event)[0]["status"] != "Cancelled":
        assert time.monotonic() < deadline, stack.runs(held_event)
        time.sleep(0.05)
    p.click("button:has-text('Resume')")
    p.wait_for_selector("h1 .pill:has-text('Paused')", state="detached")

    # replay the failed runs of a function
    p = page.go("/functions/shop-sync-inventory")
    p.click("button:has-text('Replay')")
    p.fill(".modal input[placeholder^='e.g. Bug']", "after the feed fix")
    p.wait_for_selector(".estimate b")
    assert int(p.locator(".estimate b").inner_text()) >= 1
    p.click(".modal-foot button.primary")
    p.wait_for_selector("td:has-text('after the feed fix')")
    p.wait_for_selector("tr:has-text('after the feed fix') .pill:has-text('Completed')", timeout=15000)


def pause_with_a_run_waiting(p: Any, stack: Stack, refund_id: str, option: str) -> str:
    """On Await approval's page: start a refund that waits, then pause with ``option`` chosen
    for the runs under way. Returns the refund's event id."""
    event_id = stack.send("shop/refund.requested", {"refundId": refund_id})
    stack.wait_runs(event_id, ended=False)
    p.click("button:has-text('Pause')")
    p.click(f".modal label:has-text('{option}')")
    p.wait_for_selector(f".modal label:has-text('{option}') input:checked")
    p.click(".modal button:has-text('Pause function')")
    p.wait_for_selector("h1 .pill:has-text('Paused')")
    return event_id


def test_events_pages_send_and_send_again(page: Page, stack: Stack) -> None:
    eid = stack.send("shop/order.created", {"orderId": "o-events", "amount": 5})
    stack.wait_runs(eid)
    p = page.go("/events")
    p.wait_for_selector('tr[data-event-name="shop/order.created"]')
    assert int(p.locator('tr[data-event-name="shop/order.created"] .vol b').inner_text()) >= 1
    assert "Process order" in p.locator('tr[data-event-name="shop/order.created"]').inner_text()
    page.shot("events")
    p.click("label:has-text('Internal events')")  # the invoke's event shows only with internal events
    p.wait_for_selector('tr[data-event-name="inngest/function.invoked"]')
    p.click("label:has-text('Internal events')")
    p.wait_for_selector('tr[data-event-name="inngest/function.invoked"]', state="detached")
    p.click('tr[data-event-name="shop/order.created"]')
    p.wait_for_selector("svg[aria-label='Event throughput'] rect")
    p.wait_for_selector(f'tr[data-event="{eid}"]')
    page.shot("event-type")
    p.click(f'tr[data-event="{eid}"]')
    p.wait_for_selector("text=Runs it triggered")
    assert "o-events" in p.locator(".code pre").first.inner_text()
    p.wait_for_selector(".run-line [data-status='COMPLETED']")
    page.shot("event")
    # send again: the same payload as a new event, which starts its own run
    p.click("button:has-text('Send again')")
    p.wait_for_url(re.compile(r"/events/id/(?!" + eid + ")"))
    again = p.url.rsplit("/", 1)[1]
    p.wait_for_selector(f"h1:has-text('{again}')")  # the new event's page, not the old one's
    assert "o-events" in p.locator(".code pre").first.inner_text()
    p.wait_for_selector(".run-line [data-status='COMPLETED']", timeout=15000)
    assert [r["status"] for r in stack.runs(again)] == ["Completed"]
    p.click("button:has-text('Edit and send')")
    p.fill('textarea[aria-label="JSON payload"]', '{"name": "shop/order.created", "data": {"orderId": "o-edited", "amount": 8}}')
    p.click(".modal button:has-text('Send event')")
    p.wait_for_url(re.compile(r"/events/id/(?!" + again + ")"))
    p.wait_for_selector(".code pre:has-text('o-edited')")
    p.wait_for_selector(".run-line[data-run]", timeout=10000)
    edited = p.url.rsplit("/", 1)[1]
    assert [r["event_id"] for r in stack.runs(edited)] == [edited]
    # the topbar's test event
    p.click(".topbar button:has-text('Send test event')")
    p.fill('textarea[aria-label="JSON payload"]', '{"name": "shop/inventory.sync", "data": {}}')
    p.click(".modal button:has-text('Send event')")
    p.wait_for_selector("h1:has-text('01')")
    p.wait_for_selector(".code pre:has-text('shop/inventory.sync')")


def test_apps_add_edit_resync_delete(page: Page, stack: Stack) -> None:
    p = page.go("/apps")
    card = p.locator('article[data-app="shop"]')
    card.wait_for()
    text = card.inner_text()
    url = card.locator("dt:has-text('URL') + dd").inner_text()
    assert url == f"http://localhost:{stack.app_port}/api/inngest"  # the serve URL, normalized as upstream
    assert "py 0.5.19" in text and "Synced" in text
    assert card.locator("dt:has-text('Functions') + dd").inner_text() == "5"
    assert p.locator('article[data-app="billing"] dt:has-text("Functions") + dd').inner_text() == "1"
    # when and how the app last synced, and how often it is re-synced
    assert card.locator("dt:has-text('Last sync') + dd").inner_text() != "never"
    assert card.locator("dt:has-text('Re-sync') + dd").inner_text() == "only on request"  # --no-poll
    for article in p.locator("article.app-card").all():  # no label runs past its card
        box = article.bounding_box()
        for label in article.locator("h3, dd, .pill").all():
            inner = label.bounding_box()
            assert box["x"] <= inner["x"] and inner["x"] + inner["width"] <= box["x"] + box["width"] + 0.5, \
                label.inner_text()
    page.shot("apps")
    card.locator("button:has-text('Resync')").click()
    p.wait_for_selector(".toast:has-text('shop synced')")
    # a URL nobody serves: the sync error is shown
    p.click("button:has-text('Sync new app')")
    p.fill(".modal input", "http://127.0.0.1:9/api/inngest")
    p.click(".modal button:has-text('Sync app')")
    p.wait_for_selector(".modal .error-note")
    p.click(".modal button:has-text('Cancel')")
    p.wait_for_selector("td:has-text('127.0.0.1:9')")
    # edit the URL to the same app under another host name, then delete and add it back
    card.locator("button:has-text('Edit URL')").click()
    p.fill(".modal input", stack.app_url.replace("127.0.0.1", "localhost"))
    p.click(".modal button:has-text('Save and sync')")
    p.wait_for_selector(".toast:has-text('URL updated')")
    card.locator("button:has-text('Delete')").click()
    p.wait_for_selector('article[data-app="shop"]', state="detached")
    p.click("button:has-text('Sync new app')")
    p.fill(".modal input", stack.app_url)
    p.click(".modal button:has-text('Sync app')")
    p.wait_for_selector('article[data-app="shop"]')


def test_webhooks_create_test_transform_fix_and_replay_delete(page: Page, stack: Stack) -> None:
    p = page.go("/webhooks")
    p.click("button:has-text('Create webhook')")
    p.fill(".modal input", "Stripe")
    p.click(".modal button:has-text('Create')")
    row = p.locator('tr[data-webhook="Stripe"]')
    row.wait_for()
    url = row.locator("input.webhook-url").input_value()
    assert url.startswith(f"{stack.base}/e/")
    p.wait_for_selector("[data-webhook-editor]")
    # the default transform is shown, and a sample through it gives upstream's default event
    assert "webhook/request.received" in p.locator('textarea[aria-label="Transform"]').input_value()
    strict = ("function transform(evt, headers) {\n  if (!evt.type) throw new Error('no type');\n"
              "  return {name: 'stripe/' + evt.type, data: {amount: evt.amount, sig: headers['Stripe-Signature']}};\n}")
    p.fill('textarea[aria-label="Transform"]', strict)
    p.fill('textarea[aria-label="Incoming Event JSON"]', '{"type": "charge.failed", "amount": 5}')
    p.fill('input[aria-label="Test headers"]', '{"stripe-signature": "t=1,v1=abc"}')
    p.click("button:has-text('Test transform')")
    result = p.locator(".test-result")
    result.locator("text=stripe/charge.failed").wait_for()
    assert "t=1,v1=abc" in result.inner_text()
    p.fill('textarea[aria-label="Incoming Event JSON"]', "{}")
    p.click("button:has-text('Test transform')")
    result.locator("text=Error: no type").wait_for()
    p.click("button:has-text('Save transform')")
    p.wait_for_selector(".toast:has-text('Webhook saved')")
    # a real request through the URL: stored; one the transform refuses: kept for replay
    ok = httpx.post(url, json={"type": "charge.succeeded", "amount": 7})
    assert ok.status_code == 200, ok.text
    event = httpx.get(f"{stack.base}/v1/events/{ok.json()['ids'][0]}").json()["data"]
    assert event["name"] == "stripe/charge.succeeded" and event["data"]["amount"] == 7
    refused = httpx.post(url, json={"amount": 1})
    assert refused.status_code == 400 and "no type" in refused.json()["error"]
    page.go("/webhooks")
    p.locator('tr[data-webhook="Stripe"] button:has-text("Edit")').click()
    failure = p.locator(f'tr[data-failure="{refused.json()["failure_id"]}"]')
    failure.wait_for()
    assert "no type" in failure.inner_text()
    page.shot("webhooks")
    p.fill('textarea[aria-label="Transform"]', strict.replace("if (!evt.type) throw new Error('no type');",
                                                            "evt.type = evt.type || 'unknown';"))
    p.click("button:has-text('Save transform')")
    p.wait_for_selector(".toast:has-text('Webhook saved')")
    failure.locator("button:has-text('Replay')").click()
    p.wait_for_selector(".toast:has-text('Replayed: 1 event')")
    failure.locator("text=Replayed").wait_for()
    row.locator("button:has-text('Delete')").click()
    row.wait_for(state="detached")
    assert httpx.post(url, json={"amount": 1}).status_code == 400  # now an event key: no event name


def test_start_mode_login(browser: Any, tmp_path: Path) -> None:
    secured = Stack(tmp_path, start_mode=True)
    try:
        page = Page(browser, secured.base)
        p = page.go("/runs")
        p.wait_for_url(re.compile(r"/login\?next="))
        assert httpx.post(f"{secured.base}/v0/gql", json={"query": "{ apps { id } }"}).status_code == 401
        # the APIs take the signing key as a bearer token; the Event API keeps its event keys
        bearer = {"Authorization": f"Bearer {secured.signing_key}"}
        assert httpx.post(f"{secured.base}/v0/gql", json={"query": "{ apps { id } }"}, headers=bearer).status_code == 200
        assert httpx.get(f"{secured.base}/v1/functions", headers=bearer).status_code == 200
        assert httpx.get(f"{secured.base}/metrics", headers=bearer).status_code == 200
        assert httpx.get(f"{secured.base}/v1/functions").status_code == 401
        assert httpx.post(f"{secured.base}/e/ek", json={"name": "a/b"}).status_code == 200
        assert httpx.post(f"{secured.base}/e/nope", json={"name": "a/b"}).status_code == 401
        p.fill("input[name=password]", "wrong")
        p.click("button:has-text('Sign in')")
        p.wait_for_selector(".login-error")
        page.shot("login")
        p.fill("input[name=password]", "correct horse")
        p.click("button:has-text('Sign in')")
        p.wait_for_url(re.compile(r"/runs$"))
        p.wait_for_selector("h1:has-text('Runs')")
        p.wait_for_selector(".live.on")
        p.click("button:has-text('Sign out')")
        p.wait_for_url(re.compile(r"/login"))
        errors = list(page.errors)
        page.ctx.close()
        assert errors == [], errors
    finally:
        secured.stop()


def test_start_mode_environments_switcher_and_keys(browser: Any, tmp_path: Path) -> None:
    """Start mode: create an environment, archive it and back, switch to it, and manage its
    keys — an event key with a filter (its secret shown once), a signing-key rotation."""
    secured = Stack(tmp_path, start_mode=True)
    admin = {"Authorization": f"Bearer {secured.signing_key}"}
    try:
        page = Page(browser, secured.base)
        p = page.go("/environments")
        p.fill("input[name=password]", "correct horse")
        p.click("button:has-text('Sign in')")
        p.wait_for_selector("h1:has-text('Environments')")
        p.wait_for_selector('tr[data-env="Production"]')
        p.click("button:has-text('Create environment')")
        p.fill(".modal input", "staging")
        p.click(".modal button:has-text('Create environment')")
        staging_key = p.inner_text(".modal [data-secret]").strip()
        assert staging_key.startswith("signkey-test-")
        p.click(".modal button:has-text('Done')")
        p.wait_for_selector('tr[data-env="staging"]')
        page.shot("environments")
        # the new key is staging's: it reads staging, and syncs would land there
        assert httpx.get(f"{secured.base}/v1/runs", headers={"Authorization": f"Bearer {staging_key}"}).status_code == 200
        p.click('tr[data-env="staging"] button:has-text("Archive")')
        p.wait_for_selector('tr[data-env="staging"] .pill:has-text("Archived")')
        p.click('tr[data-env="staging"] button:has-text("Unarchive")')
        p.wait_for_selector('tr[data-env="staging"] .pill:has-text("Active")')
        # a branch (made by an event): auto-archive is on until its toggle turns it off
        assert httpx.post(f"{secured.base}/e/ek?x-inngest-env=preview-1", json={"name": "a/b"}).status_code == 200
        p.reload()
        toggle = 'tr[data-env="preview-1"] input.auto-archive'
        p.wait_for_selector(toggle)
        assert p.is_checked(toggle)
        assert p.query_selector('tr[data-env="staging"] input.auto-archive') is None  # branches only
        p.click(toggle)
        p.wait_for_selector('tr[data-env="preview-1"] .switch:has-text("off")')
        assert not p.is_checked(toggle)
        preview = next(e for e in httpx.get(f"{secured.base}/v1/envs", headers=admin).json()["data"]
                       if e["name"] == "preview-1")
        assert preview["auto_archive"] is False and preview["auto_archive_at"] is None
        # the switcher: staging is what the pages show from now on
        staging = next(e for e in httpx.get(f"{secured.base}/v1/envs", headers=admin).json()["data"]
                       if e["name"] == "staging")
        with p.expect_navigation():  # switching reloads the page
            p.select_option("select[aria-label=Environment]", staging["id"])
        p.goto(secured.base + "/keys")
        p.wait_for_selector("h1:has-text('Keys')")
        assert p.eval_on_selector("select[aria-label=Environment]", "s => s.value") == staging["id"]
        p.wait_for_selector(".live.on")  # the live feed of staging (?x-inngest-env=<id>) is open
        p.wait_for_selector('table.signing-keys tr[data-state="active"]')
        # an event key with a filter: its secret is shown once
        p.click("button:has-text('Create event key')")
        p.fill(".modal input", "billing")
        p.select_option("select[aria-label='Event names filter']", "deny")
        p.fill("textarea[aria-label='Event names list']", "blocked/*")
        p.click(".modal button:has-text('Create event key')")
        event_key = p.inner_text(".modal [data-secret]").strip()
        p.click(".modal button:has-text('Done')")
        p.wait_for_selector('tr[data-key="billing"]')
        assert "deny blocked/*" in p.inner_text('tr[data-key="billing"]')
        page.shot("keys")
        sent = httpx.post(f"{secured.base}/e/{event_key}", json={"name": "billing/paid"})
        assert sent.status_code == 200, sent.text
        refused = httpx.post(f"{secured.base}/e/{event_key}", json={"name": "blocked/x"})
        assert refused.status_code == 403, refused.text
        # the event went to staging, not production
        event_id = sent.json()["ids"][0]
        assert httpx.get(f"{secured.base}/v1/events/{event_id}", headers=admin).status_code == 404
        assert httpx.get(f"{secured.base}/v1/events/{event_id}",
                         headers={**admin, "x-inngest-env": "staging"}).status_code == 200
        # rotate it: a new secret, the old one refused
        p.click('tr[data-key="billing"] button:has-text("Rotate")')
        rotated = p.inner_text(".modal [data-secret]").strip()
        p.click(".modal button:has-text('Done')")
        assert rotated != event_key
        assert httpx.post(f"{secured.base}/e/{event_key}", json={"name": "billing/paid"}).status_code == 401
        assert httpx.post(f"{secured.base}/e/{rotated}", json={"name": "billing/paid"}).status_code == 200
        # signing-key rotation: create, rotate, retire the old key
        p.click("button:has-text('Create new signing key')")
        p.wait_for_selector('table.signing-keys tr[data-state="next"]')
        p.click('table.signing-keys tr[data-state="next"] button:has-text("Rotate key")')
        p.wait_for_selector('table.signing-keys tr[data-state="previous"]')
        assert httpx.get(f"{secured.base}/v1/runs", headers={"Authorization": f"Bearer {staging_key}"}).status_code == 200
        p.click('table.signing-keys tr[data-state="previous"] button:has-text("Delete")')
        p.wait_for_selector('table.signing-keys tr[data-state="previous"]', state="detached")
        assert httpx.get(f"{secured.base}/v1/runs", headers={"Authorization": f"Bearer {staging_key}"}).status_code == 401
        errors = list(page.errors)
        page.ctx.close()
        assert errors == [], errors
    finally:
        secured.stop()


def test_start_mode_webhooks_follow_the_selected_environment(browser: Any, tmp_path: Path) -> None:
    """A webhook created with staging selected is staging's: production's list does not show it,
    its events land in staging; with a branch of staging selected, the page lists staging's
    webhooks with URLs that name the branch."""
    secured = Stack(tmp_path, start_mode=True)
    admin = {"Authorization": f"Bearer {secured.signing_key}"}
    try:
        created = httpx.post(f"{secured.base}/v1/envs", json={"name": "staging"}, headers=admin)
        assert created.status_code == 201, created.text
        staging = created.json()["data"]
        page = Page(browser, secured.base)
        p = page.go("/webhooks")
        p.fill("input[name=password]", "correct horse")
        p.click("button:has-text('Sign in')")
        p.wait_for_selector("h1:has-text('Webhooks')")
        with p.expect_navigation():  # switching reloads the page
            p.select_option("select[aria-label=Environment]", staging["id"])
        p.wait_for_selector("h1:has-text('Webhooks')")
        p.click("button:has-text('Create webhook')")
        p.fill(".modal input", "Staging hook")
        p.click(".modal button:has-text('Create')")
        row = p.locator('tr[data-webhook="Staging hook"]')
        row.wait_for()
        url = row.locator("input.webhook-url").input_value()
        # staging's, not production's
        as_staging = {"Authorization": f"Bearer {staging['signing_key']}"}
        assert [w["name"] for w in httpx.get(f"{secured.base}/v1/webhooks", headers=as_staging).json()["data"]] \
            == ["Staging hook"]
        assert httpx.get(f"{secured.base}/v1/webhooks", headers=admin).json()["data"] == []
        sent = httpx.post(url, json={"hello": "staging"})
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["ids"][0]
        assert httpx.get(f"{secured.base}/v1/events/{event_id}", headers=as_staging).status_code == 200
        assert httpx.get(f"{secured.base}/v1/events/{event_id}", headers=admin).status_code == 404
        # a branch of staging, made by a request naming it; selected, its URLs name it
        assert httpx.post(url + "?x-inngest-env=preview-1", json={"hello": "branch"}).status_code == 200
        branch = next(e for e in httpx.get(f"{secured.base}/v1/envs", headers=admin).json()["data"]
                      if e["name"] == "preview-1" and e["parent_id"] == staging["id"])
        p = page.go("/webhooks")  # the switcher lists the environments there were when it loaded
        p.wait_for_selector(f"select[aria-label=Environment] option[value='{branch['id']}']", state="attached")
        with p.expect_navigation():
            p.select_option("select[aria-label=Environment]", branch["id"])
        row = p.locator('tr[data-webhook="Staging hook"]')
        row.wait_for()
        assert row.locator("input.webhook-url").input_value() == url + "?x-inngest-env=preview-1"
        p.wait_for_selector("[data-branch-note]")
        page.shot("webhooks-branch")
        errors = list(page.errors)
        page.ctx.close()
        assert errors == [], errors
    finally:
        secured.stop()
