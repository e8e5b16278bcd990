"""The README's quick start, run as written on a fresh checkout: its install command in a new
virtualenv, its server and app commands (no activated venv), its curl commands, and the output
it promises. Everything comes from the README (tests/first_hour/readme.py), nothing is a copy.

It needs the ports the README uses (8288 and 8000); on a machine where something else holds
them, it says so and skips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.first_hour.readme import matches, promised, quick_start
from tests.first_hour.shell import background, checkout_copy, port_free, run, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    qs = quick_start()
    for port in (8288, 8000):
        if not port_free(port):
            pytest.skip(f"port {port}, which the README's quick start uses, is taken on this machine")
    work = checkout_copy(tmp_path / "pyngest")
    run(qs.install, work)
    (work / qs.app_file).write_text(qs.app_source)
    with background(qs.server, work, tmp_path / "server.log") as server:
        wait_for("http://127.0.0.1:8288/health", server, tmp_path / "server.log")
        with background(qs.app_command, work, tmp_path / "app.log") as app:
            wait_for("http://127.0.0.1:8000/api/inngest", app, tmp_path / "app.log")
            # the dev server finds the app by itself (discovery), as the README says
            deadline = time.monotonic() + 60
            while "my-app-greet" not in run("curl -s localhost:8288/v1/apps/my-app/functions", work):
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.5)
            (send, sent_promise), (read, read_promise) = qs.calls
            sent = json.loads(run(send, work))
            assert matches(sent, promised(sent_promise)), sent
            read = read.replace("01J...", sent["ids"][0])
            deadline = time.monotonic() + 60
            while not matches(runs := json.loads(run(read, work)), promised(read_promise)):
                assert time.monotonic() < deadline, runs
                time.sleep(0.5)
