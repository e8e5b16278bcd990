"""OpenAI chat completions (OpenAI-compatible) for ``step.ai.infer``."""

from __future__ import annotations

from .base import _Adapter


class Adapter(_Adapter):
    """OpenAI adapter: ``Adapter(auth_key=..., model=...)``."""

    _format = "openai-chat"
    _default_url = "https://api.openai.com/v1"
