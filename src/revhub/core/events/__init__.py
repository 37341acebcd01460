"""The event backbone: transactional outbox, buses, consumers, dead letters (DESIGN.md §4)."""
