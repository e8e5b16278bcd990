"""The physical floor: an ASGI app that does one SQLite commit per request and answers.

    python -m bench.harness.apps.floor_app <port> <sqlite-file>

A durable step over HTTP cannot cost less than one HTTP round trip plus one durable write.
The commit uses the same settings as pyngest's store (WAL, synchronous=NORMAL), inline on
the event loop — no thread hop, no batching, no parsing beyond reading the body.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any


def build(path: str) -> Any:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS steps (id INTEGER PRIMARY KEY, body BLOB)")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST":
            db.execute("BEGIN")
            db.execute("INSERT INTO steps (body) VALUES (?)", (body,))
            db.execute("COMMIT")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, loop="uvloop", http="httptools", lifespan="on")
