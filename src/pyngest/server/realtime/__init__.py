"""Realtime: publish from functions and REST, subscribe over WebSocket and SSE (PROTOCOL.md §13)."""
