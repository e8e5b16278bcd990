"""Grok chat completions (OpenAI-compatible) for ``step.ai.infer``."""

from __future__ import annotations

from .base import _Adapter


class Adapter(_Adapter):
    """Grok adapter: ``Adapter(auth_key=..., model=...)``."""

    _format = "openai-chat"
    _default_url = "https://api.x.ai/v1"
