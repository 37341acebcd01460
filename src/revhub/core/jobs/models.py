"""Job tables (filled in by the scheduler work)."""
