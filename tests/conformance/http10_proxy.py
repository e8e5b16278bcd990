"""A reverse proxy that speaks HTTP/1.0 to its clients, the way simple proxies built on Python's
``http.server`` do (the official Python SDK's own test suite puts one in front of its apps).

It forwards each request to the app with ``http.client`` (which de-chunks the app's answer),
then answers with the app's status and *all* its headers, a ``Transfer-Encoding: chunked``
included, followed by the plain body, and closes the connection: an HTTP/1.0 response whose
body ends at the close, carrying a header that would say otherwise in HTTP/1.1.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

from .local_http import LocalHTTPServer, QuietHandler


class HTTP10Proxy(LocalHTTPServer):
    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        outer = self
        self.responses: list[tuple[int, dict[str, str]]] = []  # what the proxy answered

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(host, port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                    self.send_response(resp.status)
                    for key, value in resp.getheaders():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                    outer.responses.append((resp.status, {k.lower(): v for k, v in resp.getheaders()}))
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = _forward


        super().__init__(Handler)
