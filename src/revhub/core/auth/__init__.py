"""Credentials (API keys, OAuth 2.0 client credentials), roles and scopes."""
