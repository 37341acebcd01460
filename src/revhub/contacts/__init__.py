"""Contacts: one profile per person and per account, identities, consent, lifecycle stage."""
