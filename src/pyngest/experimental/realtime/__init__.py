"""Realtime: publish from functions (or anywhere with the signing key), create subscription
tokens, and subscribe.

``publish``, ``publish_sync``, ``get_subscription_token`` and ``get_subscription_token_sync``
take the arguments of the official SDK's ``inngest.experimental.realtime``; ``subscribe`` is
pyngest's own: an async context manager that is subscribed once entered, then yields each
message published to the channel's topics (over the server's SSE endpoint).
"""

from .publish import publish, publish_sync
from .subscribe import RealtimeError, RealtimeMessage, Subscription, subscribe
from .tokens import get_subscription_token, get_subscription_token_sync

__all__ = [
    "RealtimeError",
    "RealtimeMessage",
    "Subscription",
    "get_subscription_token",
    "get_subscription_token_sync",
    "publish",
    "publish_sync",
    "subscribe",
]
