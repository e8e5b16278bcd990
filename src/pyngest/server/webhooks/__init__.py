"""Webhooks: URLs (``POST /e/{webhook key}``) whose requests a JavaScript transform turns into
events (docs/webhooks.md)."""
