"""Google Gemini for ``step.ai.infer``."""

from __future__ import annotations

from .base import _Adapter


class Adapter(_Adapter):
    """Gemini adapter: ``Adapter(auth_key=..., model=...)``."""

    _format = "gemini"
    _default_url = "https://generativelanguage.googleapis.com/v1beta/"

    def url_infer(self) -> str:
        return self._url.rstrip("/") + f"/models/{self._model}:generateContent?key={self._auth_key}"
