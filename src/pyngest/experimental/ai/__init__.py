"""Model adapters for ``step.ai.infer``: the server makes the call while the run waits."""

from . import anthropic, deepseek, gemini, grok, openai
from .base import BaseAdapter

__all__ = ["BaseAdapter", "anthropic", "deepseek", "gemini", "grok", "openai"]
