"""Anthropic messages for ``step.ai.infer``."""

from __future__ import annotations

from .base import _Adapter


class Adapter(_Adapter):
    """Anthropic adapter: ``Adapter(auth_key=..., model=...)``."""

    _format = "anthropic"
    _default_url = "https://api.anthropic.com/v1"
    # Anthropic refuses requests without an API version header.
    _default_headers = {"anthropic-version": "2023-06-01"}  # noqa: RUF012

    def url_infer(self) -> str:
        return self._url.rstrip("/") + "/messages"
