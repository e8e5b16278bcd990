"""The dashboard: one HTML shell served for every page, ES modules and styles under /static.

No build step: the pages are plain ES modules using Preact + htm (vendored in
``static/vendor`` with their licenses) and hand-drawn SVG charts. See docs/dashboard.md.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

PAGES = ["/runs", "/runs/{rest:path}", "/functions", "/functions/{rest:path}", "/events",
         "/events/{rest:path}", "/apps", "/webhooks", "/environments", "/keys"]


def _asset_version() -> str:
    """Changes whenever any asset changes, so browsers may cache assets for long."""
    digest = hashlib.sha256()
    static = resources.files("pyngest.server.ui").joinpath("static")
    for item in sorted(static.iterdir(), key=lambda i: i.name):
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()[:12]


class Dashboard:
    def __init__(self, *, mode: str) -> None:
        self.version = _asset_version()
        shell = resources.files("pyngest.server.ui").joinpath("index.html").read_text()
        self.shell = shell.replace("{{v}}", self.version).replace("{{mode}}", mode)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.shell, headers={"Cache-Control": "no-cache"})

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/runs", 302)

    def routes(self) -> list[Route | Mount]:
        static = StaticFiles(packages=[("pyngest.server.ui", "static")])
        return [
            Route("/", self.home, methods=["GET"]),
            *[Route(p, self.page, methods=["GET"]) for p in PAGES],
            Mount("/static", app=static, name="static"),
        ]
