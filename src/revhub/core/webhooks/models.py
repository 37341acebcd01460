"""Webhook tables (filled in by the webhooks work)."""
