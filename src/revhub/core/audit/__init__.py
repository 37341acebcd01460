"""The tamper-evident audit trail: every write and every denied request."""
