"""Verify Clearway webhooks: signature, timestamp window and replay."""
