"""The kernel every domain stands on; it imports no domain (DESIGN.md §2)."""
