"""Clearway transfer service: transfer intents executed exactly once."""
