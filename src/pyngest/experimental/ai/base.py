"""What an adapter tells the server about a model call (the ``AIGateway`` op's opts)."""

from __future__ import annotations

from typing import Protocol


class BaseAdapter(Protocol):
    def auth_key(self) -> str:
        """The provider API key (sent to the server, which never stores or logs it)."""
        ...

    def format(self) -> str:
        """Request format: ``openai-chat``, ``anthropic`` or ``gemini``."""
        ...

    def headers(self) -> dict[str, str]:
        ...

    def on_call(self, body: dict[str, object]) -> None:
        """Adjust the request body (e.g. fill in the model)."""
        ...

    def url_infer(self) -> str:
        ...


class _Adapter:
    _format = "openai-chat"
    _default_url = ""
    # Sent when the caller passes no headers (the official adapters replace, not merge, them).
    _default_headers: dict[str, str] = {}  # noqa: RUF012 - copied, never mutated

    def __init__(
        self,
        *,
        auth_key: str,
        model: str,
        base_url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._auth_key = auth_key
        self._model = model
        self._url = base_url or self._default_url
        self._headers = headers or dict(self._default_headers)

    def auth_key(self) -> str:
        return self._auth_key

    def format(self) -> str:
        return self._format

    def headers(self) -> dict[str, str]:
        return self._headers

    def on_call(self, body: dict[str, object]) -> None:
        if not body.get("model"):
            body["model"] = self._model

    def url_infer(self) -> str:
        return self._url.rstrip("/") + "/chat/completions"
